//! Enrollment over HTTP: a tenant makes a token, a machine presents it (no tenant header) and
//! gets its own credentials; a taken name is 409; an unknown, used-up or revoked token is 401
//! with the documented body.

use serde_json::json;

use crate::harness::{Auth, server_test};

server_test!(
    a_machine_enrolls_with_a_token_and_nothing_else,
    |h| async move {
        let t = h.tenant("acme").await;
        let auth = Auth::tenant(&t);
        let bad = h
            .post(
                "/enrollment-tokens",
                &auth,
                json!({"expiresIn": "90days", "maxUses": 5}),
            )
            .await;
        assert_eq!((bad.status, bad.field()), (422, "expiresIn"), "{bad:?}");
        let made = h
            .post(
                "/enrollment-tokens",
                &auth,
                json!({"expiresIn": "1h", "maxUses": 2, "description": "rack 4"}),
            )
            .await;
        assert_eq!(made.status, 201, "{made:?}");
        let token = made.body["token"].as_str().expect("token").to_owned();

        let enroll = |name: &str, token: &str| {
            let (h, body, auth) = (
                &h,
                json!({"name": name, "hostname": format!("{name}.example")}),
                Auth::Agent(token.to_owned()),
            );
            async move { h.post("/enroll", &auth, body).await }
        };
        let first = enroll("web-1", &token).await;
        assert_eq!(first.status, 201, "{first:?}");
        assert_eq!(first.body["tenantId"], t.id.to_string());
        // The new agent's own token is an agent token.
        let agent_token = first.body["token"].as_str().expect("token").to_owned();
        let agent_id = first.body["agentId"].as_str().expect("id").to_owned();
        let beat = h
            .post(
                &format!("/agents/{agent_id}/heartbeat"),
                &Auth::Agent(agent_token),
                json!({"runningTasks": 0, "queueDepth": 0}),
            )
            .await;
        assert_eq!(beat.status, 200, "{beat:?}");
        let taken = enroll("web-1", &token).await;
        assert_eq!((taken.status, taken.code()), (409, "conflict"), "{taken:?}");
        assert_eq!(enroll("web-2", &token).await.status, 201);
        let used_up = enroll("web-3", &token).await;
        assert_eq!(
            (used_up.status, used_up.code()),
            (401, "unauthorized"),
            "{used_up:?}"
        );
        assert_eq!(enroll("web-3", "rft_e_nothing").await.status, 401);
        let listed = h.get("/enrollment-tokens", &auth).await;
        assert_eq!(listed.body["items"][0]["uses"], 2);
        assert!(!listed.body.to_string().contains(&token));

        let fresh = h
            .post(
                "/enrollment-tokens",
                &auth,
                json!({"expiresIn": "1h", "maxUses": 9}),
            )
            .await;
        let fresh_token = fresh.body["token"].as_str().expect("token").to_owned();
        let fresh_id = fresh.body["id"].as_str().expect("id").to_owned();
        let other = Auth::tenant(&h.tenant("other").await);
        let path = format!("/enrollment-tokens/{fresh_id}");
        assert_eq!(
            h.call(axum::http::Method::DELETE, &path, &other, None)
                .await
                .status,
            404
        );
        assert_eq!(
            h.call(axum::http::Method::DELETE, &path, &auth, None)
                .await
                .status,
            204
        );
        assert_eq!(enroll("web-4", &fresh_token).await.status, 401, "revoked");
    }
);
