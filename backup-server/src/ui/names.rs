//! Names for ids: every row that mentions an agent or a policy shows its name, linked to its
//! page.

use std::collections::HashMap;

use backup_core::{AgentId, PolicyId, TenantId};
use backup_store::{PageRequest, PolicyFilter, Store, StoreError};
use maud::{Markup, html};

/// How many agents and policies are named; past that a row shows the id (still linked).
const NAMED: u32 = 500;

/// The tenant's agent and policy names.
#[derive(Debug, Default)]
pub(super) struct Names {
    agents: HashMap<AgentId, String>,
    policies: HashMap<PolicyId, String>,
}

impl Names {
    /// The names of the tenant's first [`NAMED`] agents and policies.
    pub(super) async fn load(store: &Store, tenant: TenantId) -> Result<Names, StoreError> {
        let agents = store
            .list_agents(tenant, &PageRequest::first(NAMED))
            .await?;
        let policies = store
            .list_policies(tenant, &PolicyFilter::default(), &PageRequest::first(NAMED))
            .await?;
        Ok(Names {
            agents: agents.items.into_iter().map(|a| (a.id, a.name)).collect(),
            policies: policies
                .items
                .into_iter()
                .map(|p| (p.id, p.spec.name))
                .collect(),
        })
    }

    /// The agent's name, linked to its page.
    pub(super) fn agent(&self, id: AgentId) -> Markup {
        let name = self.agents.get(&id).cloned().unwrap_or_else(|| short(id));
        html! { a href={ "/ui/agents/" (id) } { (name) } }
    }

    /// The policy's name, linked to its page; `-` for a task of no policy (a restore, a
    /// browse).
    pub(super) fn policy(&self, id: Option<PolicyId>) -> Markup {
        match id {
            None => html! { "-" },
            Some(id) => {
                let name = self.policies.get(&id).cloned().unwrap_or_else(|| short(id));
                html! { a href={ "/ui/policies/" (id) } { (name) } }
            }
        }
    }
}

/// The first eight characters of an id, for a row whose object has no name here.
fn short(id: impl std::fmt::Display) -> String {
    id.to_string().chars().take(8).collect()
}
