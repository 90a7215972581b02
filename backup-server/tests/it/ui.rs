//! The dashboard's pages and forms, through `app()`.

use axum::http::StatusCode;
use serde_json::json;

use crate::{
    harness::{Auth, Harness, Kind, backup_policy},
    web::Browser,
};

#[tokio::test]
async fn login_is_required_and_wrong_tokens_see_nothing() {
    let Some(h) = Harness::open(Kind::Sqlite, backup_server::ServerConfig::default()).await else {
        return;
    };
    let t = h.tenant("acme").await;
    h.agent(&t, "secret-agent").await;
    let mut b = Browser::new(&h);
    let any_policy = format!("/ui/policies/{}", uuid::Uuid::new_v4());
    let any_task = format!("/ui/tasks/{}", uuid::Uuid::new_v4());
    for path in [
        "/ui",
        "/ui/agents",
        "/ui/policies",
        "/ui/events",
        "/ui/snapshots",
        "/ui/fragments/agents",
        any_policy.as_str(),
        any_task.as_str(),
    ] {
        let p = b.get(path).await;
        assert_eq!(
            (p.status, p.location.as_deref()),
            (StatusCode::SEE_OTHER, Some("/ui/login")),
            "{path}"
        );
    }
    let form = b.get("/ui/login").await;
    assert_eq!(form.status, StatusCode::OK);
    let wrong = b
        .post(
            "/ui/login",
            &[
                ("csrf", &form.csrf()),
                ("tenantId", &t.id.to_string()),
                ("token", "rft_t_wrong"),
            ],
        )
        .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert!(
        !wrong.html.contains("secret-agent"),
        "a wrong token sees no data"
    );
    assert!(!b.cookies.iter().any(|(k, _)| k == "backup_session"));
    let no_csrf = b
        .post(
            "/ui/login",
            &[("tenantId", &t.id.to_string()), ("token", &t.token)],
        )
        .await;
    assert_eq!(
        no_csrf.status,
        StatusCode::FORBIDDEN,
        "the login form is CSRF-protected too"
    );
    let ok = b.login(&t).await;
    assert_eq!(
        (ok.status, ok.location.as_deref()),
        (StatusCode::SEE_OTHER, Some("/ui"))
    );
    let session = b
        .cookies
        .iter()
        .find(|(k, _)| k == "backup_session")
        .expect("session cookie")
        .1
        .clone();
    let token_hash = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(t.token.as_bytes()));
    assert!(
        !session.contains(&t.token) && !session.contains(&token_hash),
        "neither the token nor its stored hash is in the cookie: {session}"
    );
    let home = b.get("/ui/agents").await;
    assert_eq!(home.status, StatusCode::OK);
    assert!(home.html.contains("secret-agent"));
    // Logging out ends the session, on the server: a copy of the cookie is no session either.
    let copied = b.cookies.clone();
    let csrf = home.csrf();
    let out = b.post("/ui/logout", &[("csrf", &csrf)]).await;
    assert_eq!(out.location.as_deref(), Some("/ui/login"));
    assert_eq!(b.get("/ui").await.status, StatusCode::SEE_OTHER);
    b.cookies = copied;
    assert_eq!(
        b.get("/ui").await.status,
        StatusCode::SEE_OTHER,
        "a cookie copied before the logout is revoked with it"
    );
}

#[tokio::test]
async fn a_tampered_cookie_or_a_rotated_token_ends_the_session() {
    let Some(h) = Harness::open(Kind::Sqlite, backup_server::ServerConfig::default()).await else {
        return;
    };
    let t = h.tenant("acme").await;
    let mut b = Browser::new(&h);
    b.login(&t).await;
    assert_eq!(b.get("/ui").await.status, StatusCode::OK);
    let good = b.cookies.clone();
    for (k, v) in &mut b.cookies {
        if k == "backup_session" {
            // One digit of the id changed.
            let last = if v.ends_with('0') { "1" } else { "0" };
            *v = format!("{}{last}", &v[..v.len() - 1]);
        }
    }
    assert_eq!(
        b.get("/ui").await.status,
        StatusCode::SEE_OTHER,
        "a tampered cookie is no session"
    );
    b.cookies = good;
    h.post("/token/rotate", &Auth::tenant(&t), json!({})).await;
    assert_eq!(
        b.get("/ui").await.status,
        StatusCode::SEE_OTHER,
        "rotating the token ends sessions"
    );
}

#[tokio::test]
async fn pages_show_only_the_tenants_own_objects_escaped() {
    let Some(h) = Harness::open(Kind::Sqlite, backup_server::ServerConfig::default()).await else {
        return;
    };
    let t = h.tenant("acme").await;
    let other = h.tenant("other").await;
    let mine = h.agent(&t, "<script>alert(1)</script>").await.id;
    let theirs = h.agent(&other, "their-agent").await.id;
    let their_policy = h.policy(&other, backup_policy(theirs)).await;
    let mut b = Browser::new(&h);
    b.login(&t).await;
    let home = b.get("/ui/agents").await;
    assert!(
        home.html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "escaped"
    );
    assert!(!home.html.contains("<script>alert(1)"), "never raw");
    assert!(!home.html.contains("their-agent"));
    let fragment = b.get("/ui/fragments/agents").await;
    assert!(fragment.html.contains("&lt;script&gt;") && !fragment.html.contains("their-agent"));
    assert_eq!(
        b.get(&format!("/ui/agents/{theirs}")).await.status,
        StatusCode::NOT_FOUND,
        "another tenant's agent"
    );
    assert_eq!(
        b.get(&format!("/ui/agents/{mine}")).await.status,
        StatusCode::OK
    );
    assert_eq!(
        b.get("/ui/agents/not-a-uuid").await.status,
        StatusCode::NOT_FOUND
    );
    let policies = b.get("/ui/policies").await;
    assert!(
        !policies.html.contains("their-agent") && !policies.html.contains("hourly"),
        "no foreign policies"
    );
    for shared in ["/ui", "/ui/events"] {
        let page = b.get(shared).await;
        assert_eq!(page.status, StatusCode::OK, "{shared}");
        assert!(page.html.contains("&lt;script&gt;alert(1)"), "{shared}");
        assert!(!page.html.contains("<script>alert(1)"), "{shared}");
        assert!(!page.html.contains("their-agent"), "{shared}");
    }
    assert_eq!(
        b.get(&format!(
            "/ui/policies/{}",
            their_policy["id"].as_str().expect("id")
        ))
        .await
        .status,
        StatusCode::NOT_FOUND,
        "another tenant's policy"
    );
}

#[tokio::test]
async fn the_settings_form_validates_like_the_api() {
    let Some(h) = Harness::open(Kind::Sqlite, backup_server::ServerConfig::default()).await else {
        return;
    };
    let t = h.tenant("acme").await;
    let agent = h.agent(&t, "db-1").await.id;
    let mut b = Browser::new(&h);
    b.login(&t).await;
    let page = b.get(&format!("/ui/agents/{agent}")).await;
    let csrf = page.csrf();
    let mut form: Vec<(&str, String)> = vec![
        ("csrf", csrf.clone()),
        ("maxConcurrentTasks", "2".into()),
        ("maxConcurrentBackups", "1".into()),
        ("maxConcurrentChecks", "1".into()),
        ("maxConcurrentPrunes", "1".into()),
        ("cpuQuotaPercent", "150".into()),
        ("bandwidthLimitMbps", "".into()),
        ("maxRetries", "5".into()),
        ("maxBackoffMinutes", "60".into()),
        ("backoffBaseSeconds", "60".into()),
        ("backoffFailureThreshold", "3".into()),
    ];
    let as_ref = |f: &Vec<(&'static str, String)>| {
        f.iter().map(|(k, v)| (*k, v.clone())).collect::<Vec<_>>()
    };
    let pairs = as_ref(&form);
    let refs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let bad = b.post(&format!("/ui/agents/{agent}/settings"), &refs).await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    let at = bad.html.find("id=\"cpuQuotaPercent\"").expect("the field");
    let near = &bad.html[at..at + 400];
    assert!(
        near.contains("class=\"error\"") && near.contains("1-100"),
        "the error stands beside the field: {near}"
    );
    assert!(
        bad.html.contains("value=\"150\""),
        "the submitted value is kept"
    );
    let api = h.get(&format!("/agents/{agent}"), &Auth::tenant(&t)).await;
    assert_eq!(
        api.body["settings"]["cpuQuotaPercent"], 50,
        "nothing stored"
    );

    form[5].1 = "not a number".into();
    let pairs = as_ref(&form);
    let refs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let nan = b.post(&format!("/ui/agents/{agent}/settings"), &refs).await;
    assert_eq!(nan.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(nan.html.contains("not a whole number"));

    form[5].1 = "70".into();
    form[6].1 = "20".into();
    let pairs = as_ref(&form);
    let refs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let good = b.post(&format!("/ui/agents/{agent}/settings"), &refs).await;
    assert_eq!(good.status, StatusCode::SEE_OTHER);
    let api = h.get(&format!("/agents/{agent}"), &Auth::tenant(&t)).await;
    assert_eq!(
        (
            api.body["settings"]["cpuQuotaPercent"].clone(),
            api.body["settings"]["bandwidthLimitMbps"].clone()
        ),
        (json!(70), json!(20))
    );

    let forged = b
        .post(
            &format!("/ui/agents/{agent}/settings"),
            &[("csrf", "forged"), ("maxConcurrentTasks", "9")],
        )
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN, "CSRF");
}

#[tokio::test]
async fn tasks_can_be_cancelled_and_policies_managed() {
    let Some(h) = Harness::open(Kind::Sqlite, backup_server::ServerConfig::default()).await else {
        return;
    };
    let t = h.tenant("acme").await;
    let agent = h.agent(&t, "db-1").await.id;
    let p = h.policy(&t, backup_policy(agent)).await;
    let run = h
        .post(
            &format!("/policies/{}/run", p["id"].as_str().expect("id")),
            &Auth::tenant(&t),
            json!({}),
        )
        .await;
    let task = run.body["id"].as_str().expect("task").to_owned();
    let mut b = Browser::new(&h);
    b.login(&t).await;
    let page = b.get(&format!("/ui/agents/{agent}")).await;
    assert!(
        page.html.contains(&format!("/ui/tasks/{task}/cancel")),
        "a cancel button"
    );
    assert!(
        page.html.contains("0 of 5"),
        "retry metadata: retries of the budget"
    );
    let csrf = page.csrf();
    let cancelled = b
        .post(
            &format!("/ui/tasks/{task}/cancel"),
            &[("csrf", &csrf), ("agent", &agent.to_string())],
        )
        .await;
    assert_eq!(cancelled.status, StatusCode::SEE_OTHER);
    assert_eq!(
        h.get(&format!("/tasks/{task}"), &Auth::tenant(&t))
            .await
            .body["status"],
        "cancelled"
    );

    let policies = b.get("/ui/policies").await;
    let csrf = policies.csrf();
    let bad = b
        .post(
            "/ui/policies",
            &[
                ("csrf", &csrf),
                ("name", "nightly"),
                ("agentId", &agent.to_string()),
                ("kind", "backup"),
                ("every", "6h"),
                ("repository", "main"),
                ("paths", ""),
            ],
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        bad.html.contains("at least one path"),
        "the reason is shown"
    );
    let good = b
        .post(
            "/ui/policies",
            &[
                ("csrf", &csrf),
                ("name", "nightly <b>"),
                ("agentId", &agent.to_string()),
                ("kind", "backup"),
                ("cron", "0 3 * * *"),
                ("timezone", "Europe/Berlin"),
                ("repository", "main"),
                ("paths", "/srv\n/etc"),
            ],
        )
        .await;
    assert_eq!(good.status, StatusCode::SEE_OTHER, "{}", good.html);
    let list = h.get("/policies", &Auth::tenant(&t)).await;
    let created = list.body["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|p| p["name"] == "nightly <b>")
        .expect("created")
        .clone();
    assert_eq!(created["paths"], json!(["/srv", "/etc"]));
    let id = created["id"].as_str().expect("id").to_owned();
    let shown = b.get("/ui/policies").await;
    assert!(shown.html.contains("nightly &lt;b&gt;"));
    let off = b
        .post(
            &format!("/ui/policies/{id}/enabled"),
            &[("csrf", &csrf), ("enabled", "false")],
        )
        .await;
    assert_eq!(off.status, StatusCode::SEE_OTHER);
    assert_eq!(
        h.get(&format!("/policies/{id}"), &Auth::tenant(&t))
            .await
            .body["enabled"],
        false
    );
    let run = b
        .post(&format!("/ui/policies/{id}/run"), &[("csrf", &csrf)])
        .await;
    assert_eq!(
        run.location.as_deref(),
        Some(format!("/ui/policies?notice=task_created&policy={id}").as_str())
    );
    let again = b
        .post(&format!("/ui/policies/{id}/run"), &[("csrf", &csrf)])
        .await;
    let back = again.location.clone().unwrap_or_default();
    assert!(
        b.get(&back)
            .await
            .html
            .contains("Not started: nightly &lt;b&gt; already has an open task."),
        "409 shows as a notice"
    );
    // Notices come from a fixed set: text in the query string is never shown.
    let forged = b
        .get("/ui/policies?notice=Your+account+is+locked%2C+call+us")
        .await;
    assert!(!forged.html.contains("Your account is locked"));
    assert!(!forged.html.contains("class=\"notice\""));
}

#[tokio::test]
async fn badges_show_saturation_and_backoff() {
    let Some(h) = Harness::open(Kind::Sqlite, backup_server::ServerConfig::default()).await else {
        return;
    };
    let t = h.tenant("acme").await;
    let busy = h.agent(&t, "busy").await;
    let slow = h.agent(&t, "slow").await;
    h.heartbeat(&busy, json!({"runningTasks": 1, "queueDepth": 20}))
        .await;
    h.heartbeat(
        &slow,
        json!({"runningTasks": 0, "queueDepth": 0, "agentBackoffSeconds": 600}),
    )
    .await;
    let mut b = Browser::new(&h);
    b.login(&t).await;
    let home = b.get("/ui/agents").await;
    assert!(home.html.contains("badge saturated"), "{}", home.html);
    assert!(
        home.html.contains("Backoff active until <time")
            && home
                .html
                .contains(">2026-03-01 00:10:00 UTC</time> <span class=\"ago\">(in 10 min)</span>"),
        "{}",
        home.html
    );
}

#[tokio::test]
async fn pages_carry_a_csp_that_admits_only_their_own_script() {
    use base64::Engine as _;
    use sha2::Digest as _;
    let Some(h) = Harness::open(Kind::Sqlite, backup_server::ServerConfig::default()).await else {
        return;
    };
    let t = h.tenant("acme").await;
    let mut b = Browser::new(&h);
    let login = b.get("/ui/login").await;
    assert!(
        login
            .csp
            .as_deref()
            .is_some_and(|c| c.contains("frame-ancestors 'none'")),
        "{:?}",
        login.csp
    );
    b.login(&t).await;
    let page = b.get("/ui/agents").await;
    let start = page.html.find("<script>").expect("the refresh script") + "<script>".len();
    let end = start + page.html[start..].find("</script>").expect("its end");
    let hash = base64::engine::general_purpose::STANDARD
        .encode(sha2::Sha256::digest(&page.html.as_bytes()[start..end]));
    let csp = page.csp.expect("a CSP");
    assert!(
        csp.contains(&format!("script-src 'sha256-{hash}'")),
        "the CSP admits the page's own script: {csp}"
    );
    assert_eq!(
        page.html.matches("<script").count(),
        1,
        "and there is no other"
    );
}
