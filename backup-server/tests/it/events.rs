//! The event, summary and webhook routes: strict filters, webhooks only to public addresses
//! unless the server allows private ones, the secret shown once, protection in the policy
//! views and their filter.

use serde_json::json;

use crate::harness::{Auth, backup_policy, server_test};

server_test!(
    webhooks_reach_public_addresses_only_and_show_their_secret_once,
    |h| async move {
        let t = h.tenant("acme").await;
        let auth = Auth::tenant(&t);
        for (url, field) in [
            ("http://127.0.0.1:9/hook", "url"),
            ("http://[::1]/hook", "url"),
            ("http://169.254.169.254/latest/meta-data/", "url"),
            ("http://10.0.0.8/hook", "url"),
            ("http://localhost:8080/hook", "url"),
            ("ftp://1.1.1.1/hook", "url"),
        ] {
            let a = h
                .post("/webhooks", &auth, json!({"url": url, "events": ["*"]}))
                .await;
            assert_eq!((a.status, a.field()), (422, field), "{url}: {a:?}");
        }
        let a = h
            .post(
                "/webhooks",
                &auth,
                json!({"url": "https://1.1.1.1/hook", "events": ["agent.offline", "agent.gone"]}),
            )
            .await;
        assert_eq!((a.status, a.field()), (422, "events[1]"), "{a:?}");
        let created = h
            .post(
                "/webhooks",
                &auth,
                json!({"url": "https://1.1.1.1/hook", "events": ["agent.offline"], "description": "pager"}),
            )
            .await;
        assert_eq!(created.status, 201, "{created:?}");
        let secret = created.body["secret"].as_str().expect("secret").to_owned();
        assert!(secret.starts_with("whsec_"));
        let listed = h.get("/webhooks", &auth).await;
        assert_eq!(listed.body["items"][0]["url"], "https://1.1.1.1/hook");
        assert!(
            !listed.body.to_string().contains(&secret),
            "the secret is shown once"
        );
        let events = h.get("/events?type=webhook.created", &auth).await;
        assert_eq!(events.body["items"][0]["data"]["host"], "1.1.1.1");
        assert!(!events.body.to_string().contains(&secret));
    }
);

server_test!(
    event_and_protection_filters_are_strict_and_the_summary_counts,
    |h| async move {
        let t = h.tenant("acme").await;
        let auth = Auth::tenant(&t);
        let agent = h.agent(&t, "db-1").await;
        h.online(&agent).await;
        for (path, field) in [
            ("/events?type=agent.gone", "type"),
            ("/events?since=yesterday", "since"),
            ("/events?subjectId=42", "subjectId"),
            ("/policies?protection=fine", "protection"),
        ] {
            let a = h.get(path, &auth).await;
            assert_eq!((a.status, a.field()), (422, field), "{path}: {a:?}");
        }
        let p = h.policy(&t, backup_policy(agent.id)).await;
        assert_eq!(p["protection"], "never_run");
        assert!(p["alertAfter"].is_null(), "not set: {p}");
        assert_eq!(
            p["effectiveAlertAfter"], "2h 15m",
            "twice an hour plus the lease: {p}"
        );
        let never = h.get("/policies?protection=never_run", &auth).await;
        assert_eq!(never.body["items"].as_array().map(Vec::len), Some(1));
        let ok = h.get("/policies?protection=ok", &auth).await;
        assert_eq!(ok.body["items"], json!([]));
        let summary = h.get("/summary", &auth).await;
        assert_eq!(summary.status, 200);
        assert_eq!(summary.body["agents"]["online"], 1);
        assert_eq!(summary.body["policies"]["never_run"], 1);
        assert_eq!(summary.body["failedPermanently24h"], 0);
        let created = h.get("/events?type=policy.created", &auth).await;
        assert_eq!(created.body["items"][0]["subjectId"], p["id"]);
        let bad = h
            .patch(
                &format!("/policies/{}", p["id"].as_str().expect("id")),
                &auth,
                json!({"alertAfter": "soon"}),
            )
            .await;
        assert_eq!((bad.status, bad.field()), (422, "alertAfter"), "{bad:?}");
    }
);
