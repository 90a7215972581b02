//! Machines join by themselves: an agent with only an enrollment token creates its agent once,
//! keeps its credentials (mode 0600) and backs up; restarted, it reuses them; with a revoked
//! token, or one whose single use is spent, a new machine exits non-zero, naming the key.

use std::{os::unix::fs::PermissionsExt as _, time::Duration};

use serde_json::json;

use crate::harness::{AgentYaml, ServerProc, World, e2e_test, wait_for};

fn yaml(
    world: &World,
    url: &str,
    token: &str,
    name: &str,
    repo: &std::path::Path,
    pw: &std::path::Path,
) -> String {
    format!(
        "orchestratorUrl: {url}\npollingIntervalSeconds: 1\nheartbeatIntervalSeconds: 1\n\
         enrollmentToken: {token}\nname: {name}\nstateDir: {}\nrepositories:\n  main:\n    \
         url: {}\n    passwordFile: {}\n",
        world.path(&format!("{name}-state")).display(),
        repo.display(),
        pw.display()
    )
}

e2e_test!(
    a_machine_enrolls_itself_once_and_a_revoked_token_is_refused,
    |world| async move {
        let server = ServerProc::start(&world, "server");
        let api = server.tenant_api().await;
        let made = api
            .post(
                "/enrollment-tokens",
                json!({"expiresIn": "1h", "maxUses": 5}),
            )
            .await;
        let token = made["token"].as_str().expect("token").to_owned();
        let (repo, pw) = world.repository("repo");
        let data = world.data("data", 2, 10_000);
        let config = AgentYaml::new(
            "host-a",
            yaml(&world, &server.url, &token, "host-a", &repo, &pw),
        );
        let mut agent = config.start(&world);
        wait_for(30, "host-a enrolled and online", || async {
            api.all("/agents")
                .await
                .iter()
                .any(|a| a["name"] == "host-a" && a["status"] == "online")
        })
        .await;
        let credentials = world
            .path("host-a-state")
            .join(backup_agent::CREDENTIALS_FILE);
        let mode = std::fs::metadata(&credentials)
            .expect("credentials kept")
            .permissions()
            .mode();
        assert_eq!(
            mode & 0o777,
            0o600,
            "only the agent's user reads its credentials"
        );
        let agent_id = api.all("/agents").await[0]["id"]
            .as_str()
            .expect("id")
            .to_owned();
        let policy = api
            .post(
                "/policies",
                json!({"name": "b", "agentId": agent_id, "kind": "backup", "schedule": {"every": "24h"},
                       "paths": [data], "repository": "main"}),
            )
            .await;
        let q = format!(
            "/tasks?policyId={}&status=succeeded",
            policy["id"].as_str().expect("id")
        );
        wait_for(60, "a backup by the enrolled agent", || async {
            !api.all(&q).await.is_empty()
        })
        .await;

        // Restarted: the same agent, no second enrollment.
        assert!(agent.stop(), "stops on SIGTERM");
        agent.restart();
        tokio::time::sleep(Duration::from_secs(3)).await;
        let agents = api.all("/agents").await;
        assert_eq!(agents.len(), 1, "{agents:?}");
        assert_eq!(api.all("/enrollment-tokens").await[0]["uses"], 1);
        wait_for(30, "the restarted agent online", || async {
            api.get(&format!("/agents/{agent_id}")).await["status"] == "online"
        })
        .await;
        let enrolled = api.all("/events?type=agent.enrolled").await;
        assert_eq!(enrolled.len(), 1);
        assert_eq!(enrolled[0]["actor"], "agent");

        // Revoked: a new machine is refused, with the key named, and exits non-zero.
        let id = made["id"].as_str().expect("id");
        let (status, _) = api
            .call("DELETE", &format!("/enrollment-tokens/{id}"), None)
            .await;
        assert_eq!(status, 204);
        let mut late = AgentYaml::new(
            "host-b",
            yaml(&world, &server.url, &token, "host-b", &repo, &pw),
        )
        .start(&world);
        let exit = late.exit_within(30).expect("the agent exits");
        assert!(!exit.success(), "non-zero: {exit:?}");
        assert!(late.log().contains("enrollmentToken"), "{}", late.log());
        assert_eq!(api.all("/agents").await.len(), 1);

        // A token for one machine: the first enrolls, the second is refused and exits.
        let single = api
            .post(
                "/enrollment-tokens",
                json!({"expiresIn": "1h", "maxUses": 1}),
            )
            .await;
        let single = single["token"].as_str().expect("token").to_owned();
        let mut first = AgentYaml::new(
            "host-c",
            yaml(&world, &server.url, &single, "host-c", &repo, &pw),
        )
        .start(&world);
        wait_for(30, "host-c enrolled and online", || async {
            api.all("/agents")
                .await
                .iter()
                .any(|a| a["name"] == "host-c" && a["status"] == "online")
        })
        .await;
        let mut second = AgentYaml::new(
            "host-d",
            yaml(&world, &server.url, &single, "host-d", &repo, &pw),
        )
        .start(&world);
        let exit = second.exit_within(30).expect("the agent exits");
        assert!(!exit.success(), "non-zero: {exit:?}");
        assert!(second.log().contains("enrollmentToken"), "{}", second.log());
        assert_eq!(api.all("/agents").await.len(), 2, "host-a and host-c only");
        assert!(first.stop());
        assert!(agent.stop());
    }
);
