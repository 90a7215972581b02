//! The OpenAPI document, generated from the handlers' annotations and the wire types.

use utoipa::{
    Modify, OpenApi,
    openapi::{
        ContentBuilder, Ref, RefOr, ResponseBuilder,
        security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme},
    },
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
    modifiers(&Security, &CrossCutting),
)]
struct ApiDoc;

/// What any route can answer, whatever its handler does: 408 when the request outlives
/// `limits.requestTimeoutSeconds` (no body), 413 when it declares a body over 1 MiB.
struct CrossCutting;

impl Modify for CrossCutting {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for item in openapi.paths.paths.values_mut() {
            let operations = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ];
            for operation in operations.into_iter().flatten() {
                let responses = &mut operation.responses.responses;
                responses.entry("408".into()).or_insert_with(|| {
                    RefOr::T(
                        ResponseBuilder::new()
                            .description(
                                "The request took longer than limits.requestTimeoutSeconds",
                            )
                            .build(),
                    )
                });
                responses.entry("413".into()).or_insert_with(|| {
                    RefOr::T(
                        ResponseBuilder::new()
                            .description("Body over 1 MiB")
                            .content(
                                "application/json",
                                ContentBuilder::new()
                                    .schema(Some(Ref::from_schema_name("ErrorBody")))
                                    .build(),
                            )
                            .build(),
                    )
                });
            }
        }
    }
}

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
