//! Fixtures written straight into a [`Store`], for benchmarks that need many of them.

use backup_core::{AgentId, CreateAgent, TenantCreated};
use backup_store::Store;

/// A tenant `bench` with `agents` agents (`a0`, `a1`, ... on hosts `h0`, `h1`, ...).
///
/// # Panics
/// When the store refuses one of them.
pub async fn fleet(store: &Store, agents: usize) -> (TenantCreated, Vec<AgentId>) {
    let tenant = store.create_tenant("bench").await.expect("tenant");
    let mut ids = Vec::with_capacity(agents);
    for i in 0..agents {
        let body = CreateAgent {
            name: format!("a{i}"),
            hostname: format!("h{i}"),
        };
        let created = store.create_agent(tenant.id, &body).await.expect("agent");
        ids.push(created.agent.id);
    }
    (tenant, ids)
}
