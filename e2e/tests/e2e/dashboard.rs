//! The dashboard in a real browser against the real binaries and real restic: log in, read the
//! overview, open a policy's page with its chart, find the snapshot, browse it directory by
//! directory down to a lost file, restore that directory from the page, and the file is back.
//! `BACKUP_UI_SCREENSHOTS=docs` saves `overview.png`, `browse.png` and `restore.png` for the
//! README.

use backup_testkit::Browser;

use crate::harness::{Db, World, one_agent, wait_for};

/// Clicks the browse button of directory `path` on a listing, and waits for its listing.
async fn browse_into(d: &Browser, path: &str) -> String {
    d.click(&format!(
        "form:has(input[name='path'][value='{path}']) button"
    ))
    .await;
    let shown = format!("<dt>Directory</dt><dd><code>{path}</code>");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
    loop {
        let page = d.source().await;
        if page.contains(&shown) && page.contains("<table class=\"entries\">") {
            return page;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no listing of {path}: {page}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_finds_browses_and_restores_a_lost_file_in_the_browser() {
    let Some(world) = World::new(Db::Sqlite).await else {
        return;
    };
    let targets = world.path("restores");
    let extra = format!("restoreTargets: [{}]\n", targets.display());
    let w = one_agent(&world, "host1", (3, 20_000), &extra).await;
    std::fs::create_dir_all(w.data.join("deeper")).expect("mkdir");
    std::fs::write(w.data.join("deeper/notes.txt"), "keep me\n").expect("write");
    w.backup_every("nightly-home", "24h").await;
    wait_for(90, "the snapshot listed", || async {
        !w.api.all("/snapshots?repository=main").await.is_empty()
    })
    .await;
    std::fs::remove_file(w.data.join("deeper/notes.txt")).expect("the incident");

    let Some(d) = Browser::start(&world.path("profile")).await else {
        return;
    };
    d.login(&w.server.url, &w.api.tenant).await;
    let overview = d.source_with("All 1 enabled policy protected.", 30).await;
    assert!(overview.contains("nightly-home"), "in the recent events");
    d.screenshot_for_docs("overview.png").await;

    d.click("header a[href='/ui/policies']").await;
    d.source_with("<h1>Policies</h1>", 10).await;
    d.click("table a[href^='/ui/policies/']").await;
    let policy = d.source_with("<svg", 10).await;
    assert!(policy.contains("<h1>nightly-home") && policy.contains("Protected"));

    d.click("header a[href='/ui/snapshots']").await;
    d.source_with("<h1>Snapshots</h1>", 10).await;
    d.click("table.snapshots a").await;
    d.source_with("List the top directory", 10).await;
    d.click("form[action$='/ls'] button").await;
    d.source_with("<table class=\"entries\">", 90).await;

    // Down the tree one directory at a time: every level of the data's path, then `deeper`.
    let mut path = String::new();
    let mut levels = 0;
    for part in w.data.iter().skip(1) {
        path = format!("{path}/{}", part.to_string_lossy());
        browse_into(&d, &path).await;
        levels += 1;
    }
    let deeper = format!("{path}/deeper");
    let listing = browse_into(&d, &deeper).await;
    assert!(levels >= 2, "browsed {levels} levels before `deeper`");
    assert!(
        listing.contains(&format!("{deeper}/notes.txt")),
        "{listing}"
    );

    // The restore form under the listing restores this directory.
    let into = targets.join("ui");
    d.type_into("form.restore #target", &into.display().to_string())
        .await;
    d.screenshot_for_docs("browse.png").await;
    d.click("form.restore button[type=submit]").await;
    // restic 0.14 counts the one file; 0.17+ counts the directories it made on the way too.
    let done = d.source_with("Restored ", 90).await;
    assert!(done.contains(", 8 B.</p>"), "the file's 8 bytes: {done}");
    d.screenshot_for_docs("restore.png").await;
    let back = into
        .join(w.data.strip_prefix("/").expect("absolute"))
        .join("deeper/notes.txt");
    assert_eq!(
        std::fs::read_to_string(&back).expect("the file is back"),
        "keep me\n"
    );
    d.close().await;
}
