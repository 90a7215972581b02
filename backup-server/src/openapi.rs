//! The OpenAPI document, generated from the handlers' annotations and the wire types.

use utoipa::{
    Modify, OpenApi,
    openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme},
};

use crate::routes;

#[derive(OpenApi)]
#[openapi(
    info(title = "restic fleet orchestrator", description = "The HTTP API of backup-server (DESIGN §3)."),
    paths(
        routes::create_tenant, routes::rotate_tenant_token,
        routes::create_agent, routes::list_agents, routes::get_agent, routes::delete_agent,
        routes::patch_settings, routes::rotate_agent_token, routes::heartbeat, routes::claim,
        routes::start_task, routes::report_result, routes::list_tasks, routes::get_task, routes::cancel_task,
        routes::create_policy, routes::list_policies, routes::get_policy, routes::update_policy,
        routes::delete_policy, routes::run_policy,
        routes::list_backup_runs,
        routes::healthz, routes::readyz, routes::metrics, routes::openapi_json,
    ),
    modifiers(&Security),
)]
struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let bearer =
            || SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build());
        components.add_security_scheme("tenant", bearer());
        components.add_security_scheme("agent", bearer());
        components.add_security_scheme("admin", bearer());
        components.add_security_scheme(
            "tenantId",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-Tenant-ID"))),
        );
    }
}

/// The OpenAPI document of every route.
pub fn openapi() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}
