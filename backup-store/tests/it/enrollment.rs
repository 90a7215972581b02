//! Enrollment tokens: an agent creates itself with one, once per use; revoked, expired or
//! used-up tokens enroll nobody; a name taken by a live agent is a conflict.

use backup_core::{CreateEnrollmentToken, EnrollRequest, EventType};
use backup_store::{EventFilter, PageRequest, StoreError};

use crate::harness::store_test;

fn machine(name: &str) -> EnrollRequest {
    EnrollRequest {
        name: name.into(),
        hostname: format!("{name}.example"),
    }
}

store_test!(
    an_enrollment_token_creates_agents_until_it_is_used_up_expired_or_revoked,
    |env| async move {
        let t = env.tenant("acme").await;
        let made = env
            .store
            .create_enrollment_token(
                t.id,
                &CreateEnrollmentToken {
                    description: Some("rack 4".into()),
                    expires_in: "1h".into(),
                    max_uses: 2,
                },
            )
            .await
            .expect("token");
        assert!(made.token.starts_with("rft_e_"));
        let first = env
            .store
            .enroll(&made.token, &machine("web-1"))
            .await
            .expect("enroll")
            .expect("accepted");
        assert_eq!(first.tenant_id, t.id);
        let agent = env
            .store
            .get_agent(t.id, first.agent_id)
            .await
            .expect("agent");
        assert_eq!(
            (agent.name.as_str(), agent.hostname.as_str()),
            ("web-1", "web-1.example")
        );
        // The agent's own token works; the enrollment token is not an agent token.
        assert!(
            env.store
                .authenticate_agent(&first.token)
                .await
                .expect("auth")
                .is_some()
        );
        assert!(
            env.store
                .authenticate_agent(&made.token)
                .await
                .expect("auth")
                .is_none()
        );
        // A name taken by a live agent is a conflict, and spends no use.
        let err = env
            .store
            .enroll(&made.token, &machine("web-1"))
            .await
            .expect_err("taken");
        assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
        env.store
            .enroll(&made.token, &machine("web-2"))
            .await
            .expect("enroll")
            .expect("the second use");
        assert!(
            env.store
                .enroll(&made.token, &machine("web-3"))
                .await
                .expect("enroll")
                .is_none(),
            "used up"
        );
        let listed = env
            .store
            .list_enrollment_tokens(t.id, &PageRequest::default())
            .await
            .expect("list");
        assert_eq!((listed.items[0].uses, listed.items[0].max_uses), (2, 2));
        assert!(
            !serde_json::to_string(&listed)
                .expect("json")
                .contains(&made.token)
        );
        let enrolled = env
            .store
            .list_events(
                t.id,
                &EventFilter {
                    event_type: Some(EventType::AgentEnrolled),
                    ..EventFilter::default()
                },
                &PageRequest::default(),
            )
            .await
            .expect("events");
        assert_eq!(enrolled.items.len(), 2);

        // Revoked: nobody; another tenant cannot revoke it.
        let second = env
            .store
            .create_enrollment_token(
                t.id,
                &CreateEnrollmentToken {
                    description: None,
                    expires_in: "10m".into(),
                    max_uses: 10,
                },
            )
            .await
            .expect("token");
        let other = env.tenant("other").await;
        assert!(matches!(
            env.store
                .revoke_enrollment_token(other.id, second.view.id)
                .await,
            Err(StoreError::NotFound(_))
        ));
        env.store
            .revoke_enrollment_token(t.id, second.view.id)
            .await
            .expect("revoke");
        assert!(
            env.store
                .enroll(&second.token, &machine("x"))
                .await
                .expect("enroll")
                .is_none()
        );
        // Expired: nobody.
        let third = env
            .store
            .create_enrollment_token(
                t.id,
                &CreateEnrollmentToken {
                    description: None,
                    expires_in: "10m".into(),
                    max_uses: 10,
                },
            )
            .await
            .expect("token");
        env.advance_secs(11 * 60);
        assert!(
            env.store
                .enroll(&third.token, &machine("late"))
                .await
                .expect("enroll")
                .is_none()
        );
        assert!(
            env.store
                .enroll("rft_e_nonsense", &machine("x"))
                .await
                .expect("enroll")
                .is_none()
        );
    }
);
