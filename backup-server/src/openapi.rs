//! The OpenAPI document, generated from the handlers' annotations and the wire types.

use utoipa::{
    Modify, OpenApi,
    openapi::{
        ContentBuilder, Ref, RefOr, Response, ResponseBuilder,
        security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme},
    },
};

use crate::routes;

/// The document's frame; its paths come from the router's declaration ([`routes::api`]).
#[derive(OpenApi)]
#[openapi(info(
    title = "restic fleet orchestrator",
    description = "The HTTP API of backup-server: tenants, agents, policies, tasks and runs."
))]
struct ApiDoc;

/// The answers that do not depend on the handler, declared here once for every operation:
/// 408 when a request outlives `limits.requestTimeoutSeconds` and 413 for a body over 1 MiB
/// (any route); 400 for malformed JSON (routes that take a body); 401 for the credentials the
/// route asks for; 503 when the database does not answer (routes that need it); 429 when an
/// agent exceeds its request rate or an address its failed authentications.
struct SharedResponses;

impl SharedResponses {
    fn error(description: &str) -> RefOr<Response> {
        RefOr::T(
            ResponseBuilder::new()
                .description(description)
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("ErrorBody")))
                        .build(),
                )
                .build(),
        )
    }
}

impl Modify for SharedResponses {
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
                // The schemes an operation names ("tenant", "agent", "admin").
                let schemes: Vec<String> = serde_json::to_value(&operation.security)
                    .ok()
                    .and_then(|v| v.as_array().cloned())
                    .unwrap_or_default()
                    .iter()
                    .filter_map(|r| r.as_object().map(|o| o.keys().cloned().collect::<Vec<_>>()))
                    .flatten()
                    .collect();
                let has_body = operation.request_body.is_some();
                let responses = &mut operation.responses.responses;
                let mut add = |status: &str, description: &str| {
                    responses
                        .entry(status.into())
                        .or_insert_with(|| Self::error(description));
                };
                if has_body {
                    add("400", "Malformed JSON");
                }
                let unauthorized = if schemes.iter().any(|s| s == "agent") {
                    Some("Missing, unknown or revoked agent token")
                } else if schemes.iter().any(|s| s == "enrollment") {
                    Some("An unknown, revoked, expired or used-up enrollment token")
                } else if schemes.iter().any(|s| s == "admin") {
                    Some("Missing or wrong admin token, or none configured")
                } else if schemes.iter().any(|s| s == "tenant") {
                    Some("Missing or wrong tenant credentials")
                } else {
                    None
                };
                if let Some(description) = unauthorized {
                    add("401", description);
                    add("503", "Database unavailable");
                    // Any credentials: past limits.authFailuresPerMinute from one address.
                    add(
                        "429",
                        if schemes.iter().any(|s| s == "agent") {
                            "Too many requests from this agent, or too many failed \
                             authentications from this address"
                        } else {
                            "Too many failed authentications from this address"
                        },
                    );
                }
                add("413", "Body over 1 MiB");
                responses.entry("408".into()).or_insert_with(|| {
                    RefOr::T(
                        ResponseBuilder::new()
                            .description(
                                "The request took longer than limits.requestTimeoutSeconds",
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
        components.add_security_scheme("enrollment", bearer());
        components.add_security_scheme(
            "tenantId",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-Tenant-ID"))),
        );
    }
}

/// The OpenAPI document of every route (built once).
pub fn openapi() -> utoipa::openapi::OpenApi {
    static DOC: std::sync::OnceLock<utoipa::openapi::OpenApi> = std::sync::OnceLock::new();
    DOC.get_or_init(|| {
        let mut doc = ApiDoc::openapi().merge_from(routes::api().into_openapi());
        Security.modify(&mut doc);
        SharedResponses.modify(&mut doc);
        doc
    })
    .clone()
}
