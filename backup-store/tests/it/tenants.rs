use backup_core::{
    AgentId, CreateAgent, Page, PolicyId, PolicyPatch, SettingsPatch, TaskId, TenantId,
};
use backup_store::{BackupRunFilter, PageRequest, PolicyFilter, Store, StoreError, TaskFilter};

use crate::harness::{backup_every_hour, store_test};

/// Whether the store accepts `token` as the tenant's.
async fn tenant_accepts(store: &Store, tenant: TenantId, token: &str) -> bool {
    store
        .tenant_token_matches(tenant, token)
        .await
        .expect("token check")
}

/// Whether the store knows `token` as an agent's.
async fn agent_token_known(store: &Store, token: &str) -> bool {
    store
        .authenticate_agent(token)
        .await
        .expect("auth")
        .is_some()
}

async fn session_open(store: &Store, id: &str) -> bool {
    store.ui_session(id).await.expect("read").is_some()
}

/// Asserts that a list call succeeded and found nothing.
fn empty<T: std::fmt::Debug>(list: backup_store::Result<Page<T>>, what: &str) {
    let items = list.expect(what).items;
    assert!(items.is_empty(), "{what}: {items:?}");
}

store_test!(tokens_verify_rotate_and_never_leak, |env| async move {
    let t = env.tenant("acme").await;
    assert!(t.token.len() >= 32, "at least 128 bits");
    assert!(tenant_accepts(&env.store, t.id, &t.token).await);
    assert!(!tenant_accepts(&env.store, t.id, "rft_t_wrong").await);
    assert!(!tenant_accepts(&env.store, TenantId::new(), &t.token).await);

    let rotated = env.store.rotate_tenant_token(t.id).await.expect("rotate");
    assert_ne!(rotated, t.token);
    assert!(!tenant_accepts(&env.store, t.id, &t.token).await);
    assert!(tenant_accepts(&env.store, t.id, &rotated).await);

    let a = env.agent(&t, "db-1").await;
    let who = env
        .store
        .authenticate_agent(&a.token)
        .await
        .expect("auth")
        .expect("known token");
    assert_eq!((who.agent_id, who.tenant_id), (a.agent.id, t.id));
    let new_agent_token = env
        .store
        .rotate_agent_token(t.id, a.agent.id)
        .await
        .expect("rotate");
    assert!(!agent_token_known(&env.store, &a.token).await);
    assert!(agent_token_known(&env.store, &new_agent_token).await);
    // A tenant token is no agent token, and the other way round.
    assert!(!agent_token_known(&env.store, &rotated).await);
    assert!(!tenant_accepts(&env.store, t.id, &new_agent_token).await);
});

store_test!(another_tenants_objects_are_not_found, |env| async move {
    let owner = env.tenant("owner").await;
    let other = env.tenant("other").await;
    let agent = env.agent(&owner, "db-1").await;
    env.online(agent.agent.id).await;
    let policy = env.policy(&owner, backup_every_hour(agent.agent.id)).await;
    let task = env
        .store
        .run_policy_now(owner.id, policy.id)
        .await
        .expect("run now");
    let s = &env.store;
    let id = agent.agent.id;
    let nf = |r: Result<(), StoreError>, what: &str| {
        assert!(matches!(r, Err(StoreError::NotFound(_))), "{what}: {r:?}");
    };
    nf(s.get_agent(other.id, id).await.map(drop), "get agent");
    nf(
        s.patch_settings(other.id, id, &SettingsPatch::default())
            .await
            .map(drop),
        "patch settings",
    );
    nf(
        s.rotate_agent_token(other.id, id).await.map(drop),
        "rotate agent token",
    );
    nf(s.delete_agent(other.id, id).await, "delete agent");
    nf(
        s.get_policy(other.id, policy.id).await.map(drop),
        "get policy",
    );
    nf(
        s.update_policy(other.id, policy.id, &PolicyPatch::default())
            .await
            .map(drop),
        "update policy",
    );
    nf(s.delete_policy(other.id, policy.id).await, "delete policy");
    nf(
        s.run_policy_now(other.id, policy.id).await.map(drop),
        "run now",
    );
    nf(s.get_task(other.id, task.id).await.map(drop), "get task");
    nf(
        s.cancel_task(other.id, task.id).await.map(drop),
        "cancel task",
    );
    // Lists filtered by another tenant's ids show nothing, and unfiltered lists nothing of theirs.
    let page = PageRequest::default();
    empty(s.list_agents(other.id, &page).await, "agents");
    let pf = PolicyFilter {
        agent_id: Some(id),
        ..PolicyFilter::default()
    };
    empty(s.list_policies(other.id, &pf, &page).await, "policies");
    let tf = TaskFilter {
        agent_id: Some(id),
        ..TaskFilter::default()
    };
    empty(s.list_tasks(other.id, &tf, &page).await, "tasks");
    let rf = BackupRunFilter {
        task_id: Some(task.id),
        ..BackupRunFilter::default()
    };
    empty(
        s.list_backup_runs(other.id, &rf, &page).await,
        "backup runs",
    );
    // A policy cannot point at another tenant's agent.
    let err = s
        .create_policy(other.id, &backup_every_hour(id))
        .await
        .expect_err("foreign agent");
    assert!(
        matches!(&err, StoreError::Validation(e) if e.field() == Some("agentId")),
        "{err:?}"
    );
    // Unknown ids are simply not found.
    nf(
        s.get_agent(owner.id, AgentId::new()).await.map(drop),
        "unknown agent",
    );
    nf(
        s.get_policy(owner.id, PolicyId::new()).await.map(drop),
        "unknown policy",
    );
    nf(
        s.get_task(owner.id, TaskId::new()).await.map(drop),
        "unknown task",
    );
    // Everything still exists for its owner.
    s.get_agent(owner.id, id).await.expect("owner sees agent");
    s.get_task(owner.id, task.id)
        .await
        .expect("owner sees task");
    // Creating an agent for an unknown tenant fails cleanly.
    let unknown = s
        .create_agent(
            TenantId::new(),
            &CreateAgent {
                name: "x".into(),
                hostname: "x".into(),
            },
        )
        .await;
    assert!(
        matches!(unknown, Err(StoreError::NotFound(_))),
        "{unknown:?}"
    );
});

store_test!(names_are_validated, |env| async move {
    let err = env
        .store
        .create_tenant("   ")
        .await
        .expect_err("blank name");
    assert!(
        matches!(&err, StoreError::Validation(e) if e.field() == Some("name")),
        "{err:?}"
    );
    let long = "x".repeat(201);
    assert!(env.store.create_tenant(&long).await.is_err());
});

store_test!(lists_paginate_newest_first, |env| async move {
    let t = env.tenant("acme").await;
    let mut made = Vec::new();
    for i in 0..7 {
        made.push(env.agent(&t, &format!("agent-{i}")).await.agent.id);
        env.advance_secs(1);
    }
    made.reverse();
    let mut seen = Vec::new();
    let mut page = PageRequest::first(3);
    loop {
        let p = env.store.list_agents(t.id, &page).await.expect("page");
        assert!(p.items.len() <= 3);
        seen.extend(p.items.iter().map(|a| a.id));
        match p.next_cursor {
            Some(c) => page = PageRequest::after(3, c),
            None => break,
        }
    }
    assert_eq!(seen, made, "every agent once, newest first");
    let bad = env
        .store
        .list_agents(t.id, &PageRequest::after(3, "zz"))
        .await;
    assert!(
        matches!(&bad, Err(StoreError::Validation(e)) if e.field() == Some("cursor")),
        "{bad:?}"
    );
});

store_test!(
    readers_see_writes_committed_after_their_last_query,
    |env| async move {
        // A read connection must not keep an old snapshot: a token created after a reader's last
        // query is accepted by that reader at once, and again after a restart.
        let t = env.tenant("acme").await;
        for _ in 0..8 {
            assert!(tenant_accepts(&env.store, t.id, &t.token).await);
            assert!(!agent_token_known(&env.store, "rft_a_unknown").await);
        }
        for i in 0..4 {
            let a = env.agent(&t, &format!("db-{i}")).await;
            for _ in 0..4 {
                assert!(agent_token_known(&env.store, &a.token).await, "agent {i}");
            }
        }
        let a = env.agent(&t, "last").await;
        let reopened = env.replica().await;
        assert!(agent_token_known(&reopened, &a.token).await);
    }
);

store_test!(
    dashboard_sessions_end_at_logout_rotation_and_expiry,
    |env| async move {
        let t = env.tenant("acme").await;
        let other = env.tenant("other").await;
        let hours = |h: u64| std::time::Duration::from_secs(h * 3600);
        let s = env
            .store
            .open_ui_session(t.id, hours(12))
            .await
            .expect("open");
        assert!(s.id.starts_with("rft_s_") && s.id.len() == 70, "{}", s.id);
        assert!(!format!("{s:?}").contains(&s.id), "Debug hides the id");
        let found = env
            .store
            .ui_session(&s.id)
            .await
            .expect("read")
            .expect("open");
        assert_eq!((found.tenant, found.csrf.clone()), (t.id, s.csrf.clone()));
        assert!(!session_open(&env.store, "rft_s_unknown").await);
        assert!(matches!(
            env.store.open_ui_session(TenantId::new(), hours(1)).await,
            Err(StoreError::NotFound("tenant"))
        ));

        // Logout ends one session.
        let second = env
            .store
            .open_ui_session(t.id, hours(12))
            .await
            .expect("open");
        env.store.close_ui_session(&s.id).await.expect("close");
        assert!(!session_open(&env.store, &s.id).await);
        assert!(session_open(&env.store, &second.id).await);

        // Rotation ends the tenant's, not another tenant's.
        let others = env
            .store
            .open_ui_session(other.id, hours(12))
            .await
            .expect("open");
        env.store.rotate_tenant_token(t.id).await.expect("rotate");
        assert!(!session_open(&env.store, &second.id).await);
        assert!(session_open(&env.store, &others.id).await);

        // Expiry.
        let short = env
            .store
            .open_ui_session(other.id, hours(1))
            .await
            .expect("open");
        env.advance_secs(3601);
        assert!(!session_open(&env.store, &short.id).await);
        assert!(session_open(&env.store, &others.id).await);
    }
);
