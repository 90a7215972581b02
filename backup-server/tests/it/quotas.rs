//! Tenant limits: past `limits.maxAgentsPerTenant` or `maxPoliciesPerTenant` a creation is 403
//! `quota_exceeded` naming the key; a tenant past `tenantRequestsPerSecond` gets 429 with
//! Retry-After while another tenant's requests go on.

use axum::http::Method;
use backup_server::{LimitsConfig, ServerConfig};
use serde_json::json;

use crate::harness::{Auth, backup_policy, server_test};

server_test!(
    over_its_limits_a_tenant_is_refused_and_a_flood_is_its_own_problem,
    ServerConfig {
        limits: LimitsConfig {
            max_agents_per_tenant: 2,
            max_policies_per_tenant: 1,
            tenant_requests_per_second: 5,
            ..LimitsConfig::default()
        },
        ..ServerConfig::default()
    },
    |h| async move {
        let t = h.tenant("acme").await;
        let auth = Auth::tenant(&t);
        let a = h.agent(&t, "a").await;
        let b = h.agent(&t, "b").await;
        let third = h
            .post("/agents", &auth, json!({"name": "c", "hostname": "c"}))
            .await;
        assert_eq!(
            (third.status, third.code()),
            (403, "quota_exceeded"),
            "{third:?}"
        );
        assert!(
            third.body.to_string().contains("limits.maxAgentsPerTenant"),
            "{third:?}"
        );
        // Enrollment counts too, and a refused enrollment does not use up the token.
        let made = h
            .post(
                "/enrollment-tokens",
                &auth,
                json!({"expiresIn": "1h", "maxUses": 1}),
            )
            .await;
        assert_eq!(made.status, 201, "{made:?}");
        let enroll_auth = Auth::Agent(made.body["token"].as_str().expect("token").to_owned());
        let enroll_body = json!({"name": "d", "hostname": "d"});
        let refused = h.post("/enroll", &enroll_auth, enroll_body.clone()).await;
        assert_eq!(
            (refused.status, refused.code()),
            (403, "quota_exceeded"),
            "{refused:?}"
        );
        // A deleted agent frees its place.
        let gone = h
            .call(Method::DELETE, &format!("/agents/{}", b.id), &auth, None)
            .await;
        assert_eq!(gone.status, 204, "{gone:?}");
        let enrolled = h.post("/enroll", &enroll_auth, enroll_body).await;
        assert_eq!(enrolled.status, 201, "the one use was left: {enrolled:?}");
        h.policy(&t, backup_policy(a.id)).await;
        let second = h.post("/policies", &auth, backup_policy(a.id)).await;
        assert_eq!(
            (second.status, second.code()),
            (403, "quota_exceeded"),
            "{second:?}"
        );

        // A flood of one tenant: 429 with Retry-After past the burst; another tenant is served.
        let other = Auth::tenant(&h.tenant("other").await);
        let mut refused = None;
        for _ in 0..20 {
            let a = h.get("/agents", &auth).await;
            if a.status == 429 {
                refused = Some(a);
                break;
            }
        }
        let refused = refused.expect("the flood is refused past the burst");
        assert_eq!(refused.code(), "rate_limited");
        assert!(refused.header("retry-after").is_some(), "{refused:?}");
        assert_eq!(
            h.get("/agents", &other).await.status,
            200,
            "the other tenant is served"
        );
    }
);
