//! Secrets never reach the logs. A whole session runs against the binaries at `RUST_LOG=debug`
//! (every crate, sqlx and hyper included): tenant creation with the admin token, requests with
//! wrong tokens and with a token in the query string, a dashboard login, an agent backing up
//! with real restic, agent and tenant token rotation, agent deletion. Then both processes' logs
//! are searched for every secret that crossed them.

use serde_json::json;

use crate::harness::{ADMIN, ServerProc, agent_yaml, backup_every, e2e_test, wait_for};

/// Trust auth ignores it; the server must still not print it.
const DATABASE_PASSWORD: &str = "pg-password-never-logged-4f1c";
const BACKEND_SECRET: &str = "aws-secret-never-logged-9b7e";

/// The database URL with a password in it, where the URL has none.
fn with_password(url: &str) -> String {
    match url.strip_prefix("postgres://") {
        Some(rest) if rest.contains('@') && !rest[..rest.find('@').unwrap_or(0)].contains(':') => {
            let at = rest.find('@').unwrap_or(0);
            format!(
                "postgres://{}:{DATABASE_PASSWORD}{}",
                &rest[..at],
                &rest[at..]
            )
        }
        _ => url.to_owned(),
    }
}

/// The value of cookie `name` in a response's `Set-Cookie` headers.
fn set_cookie(response: &reqwest::Response, name: &str) -> Option<String> {
    response
        .headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|c| {
            c.split(';')
                .next()?
                .strip_prefix(name)?
                .strip_prefix('=')
                .map(str::to_owned)
        })
}

/// The hidden CSRF field of a page.
fn csrf_of(html: &str) -> String {
    let at = html.find(r#"name="csrf" value=""#).expect("a csrf field") + 19;
    html[at..].split('"').next().expect("value").to_owned()
}

async fn status(request: reqwest::RequestBuilder) -> u16 {
    request.send().await.expect("request").status().as_u16()
}

e2e_test!(
    tokens_and_passwords_never_appear_in_the_logs,
    |world| async move {
        let http = reqwest::Client::new();
        let database = with_password(&world.database);
        let mut server = ServerProc::start_with_env(
            &world,
            "server",
            &[("RUST_LOG", "debug"), ("BACKUP_SERVER_DATABASE", &database)],
        );
        let api = server.tenant_api().await;
        let tenant_id = api.tenant.id.to_string();
        let tenant_token = api.tenant.token.clone();
        let url = server.url.clone();

        // Wrong tokens, a near miss of the real one, a token in the query string.
        let near_miss = format!("{}x", &tenant_token[..tenant_token.len() - 1]);
        let unauthorized = [
            http.get(format!("{url}/agents"))
                .bearer_auth(&near_miss)
                .header("X-Tenant-ID", &tenant_id),
            http.get(format!(
                "{url}/agents?token={tenant_token}&access_token={tenant_token}"
            )),
            http.post(format!("{url}/tenants"))
                .bearer_auth(&tenant_token)
                .json(&json!({"name": "not admin"})),
        ];
        for request in unauthorized {
            let got = status(request).await;
            assert!(got == 401 || got == 403, "{got}");
        }

        // The dashboard: a wrong token, then the right one; the session cookie is a secret too.
        let form = http
            .get(format!("{url}/ui/login"))
            .send()
            .await
            .expect("login form");
        let login_cookie = set_cookie(&form, "backup_login_csrf").expect("login csrf cookie");
        let csrf = csrf_of(&form.text().await.expect("html"));
        let no_redirect = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client");
        let login = |token: String| {
            no_redirect
                .post(format!("{url}/ui/login"))
                .header("Cookie", format!("backup_login_csrf={login_cookie}"))
                .form(&[
                    ("csrf", csrf.clone()),
                    ("tenantId", tenant_id.clone()),
                    ("token", token),
                ])
                .send()
        };
        let refused = login(near_miss.clone()).await.expect("login");
        assert_eq!(refused.status().as_u16(), 401);
        let logged_in = login(tenant_token.clone()).await.expect("login");
        assert_eq!(logged_in.status().as_u16(), 303);
        let session = set_cookie(&logged_in, "backup_session").expect("session cookie");
        let dashboard = http
            .get(format!("{url}/ui"))
            .header("Cookie", format!("backup_session={session}"))
            .send()
            .await
            .expect("dashboard");
        assert_eq!(dashboard.status().as_u16(), 200);

        // An agent backs up with real restic, with a backend secret in its repository's env.
        let (repo, pw) = world.repository("repo");
        let repo_password = std::fs::read_to_string(&pw).expect("password");
        let data = world.data("data", 2, 10_000);
        let agent = api.agent("host1").await;
        let mut config = agent_yaml(&world, "agent", &url, &agent, &[("main", &repo, &pw)], "");
        config.yaml.push_str(&format!(
            "    env:\n      AWS_SECRET_ACCESS_KEY: {BACKEND_SECRET}\n"
        ));
        let mut a = config.start_with_env(&world, &[("RUST_LOG", "debug")]);
        api.post(
            "/policies",
            backup_every("now", &agent, "1h", &data, "main"),
        )
        .await;
        wait_for(90, "a backup", || async {
            !api.all("/backup-runs?status=succeeded").await.is_empty()
        })
        .await;

        // Agent token rotation: the running agent is shut out, the new token works.
        let rotated = api
            .post(&format!("/agents/{}/token", agent.id), json!({}))
            .await;
        let new_agent_token = rotated["token"].as_str().expect("new token").to_owned();
        wait_for(30, "the agent to be refused", || async {
            a.log().contains("server answered 401")
        })
        .await;
        let heartbeat = |token: String| {
            http.post(format!("{url}/agents/{}/heartbeat", agent.id))
                .bearer_auth(token)
                .json(&json!({"runningTasks": 0, "queueDepth": 0}))
                .send()
        };
        let old = heartbeat(agent.token.clone()).await.expect("heartbeat");
        assert_eq!(old.status().as_u16(), 401);
        let new = heartbeat(new_agent_token.clone()).await.expect("heartbeat");
        assert!(new.status().is_success(), "{}", new.status());
        assert!(a.stop(), "the agent stops cleanly");

        // Tenant token rotation, then the agent is deleted with the new token.
        let (code, body) = api.call("POST", "/token/rotate", None).await;
        assert_eq!(code, 200, "{body}");
        let new_tenant_token = body["token"].as_str().expect("token").to_owned();
        let deleted = status(
            http.delete(format!("{url}/agents/{}", agent.id))
                .bearer_auth(&new_tenant_token)
                .header("X-Tenant-ID", &tenant_id),
        )
        .await;
        assert_eq!(deleted, 204);
        let after = heartbeat(new_agent_token.clone()).await.expect("heartbeat");
        assert_eq!(
            after.status().as_u16(),
            401,
            "deleting an agent revokes its token"
        );
        server.stop();

        let server_log = server.log();
        let agent_log = a.log();
        // The logs are real and at debug level: the session is in them.
        assert!(
            server_log.contains("DEBUG"),
            "the server logged at debug level"
        );
        assert!(
            server_log.contains("/agents"),
            "the server logged its requests"
        );
        assert!(
            agent_log.contains("DEBUG"),
            "the agent logged at debug level"
        );
        assert!(agent_log.contains("restic found"), "{agent_log}");
        let secrets: Vec<(&str, &str)> = vec![
            ("the admin token", ADMIN),
            ("the tenant token", &tenant_token),
            ("the rotated tenant token", &new_tenant_token),
            ("a near miss of the tenant token", &near_miss),
            ("the agent token", &agent.token),
            ("the rotated agent token", &new_agent_token),
            ("the dashboard session", &session),
            ("the login form's CSRF token", &csrf),
            ("the repository password", repo_password.trim()),
            ("the backend secret", BACKEND_SECRET),
        ];
        let mut secrets = secrets;
        if database != world.database {
            // Only where a password was put into the URL (PostgreSQL): SQLite URLs carry none.
            secrets.push(("the database password", DATABASE_PASSWORD));
        }
        for (what, secret) in secrets {
            assert!(secret.len() >= 16, "{what} is long enough to search for");
            for (name, log) in [("server", &server_log), ("agent", &agent_log)] {
                assert!(!log.contains(secret), "{what} appears in the {name}'s log");
            }
        }
        // Token bodies without their prefix, in case a log line printed a part of one.
        for token in [
            &tenant_token,
            &new_tenant_token,
            &agent.token,
            &new_agent_token,
        ] {
            let tail = &token[token.len() - 20..];
            assert!(
                !server_log.contains(tail) && !agent_log.contains(tail),
                "a token's tail appears in a log"
            );
        }
    }
);
