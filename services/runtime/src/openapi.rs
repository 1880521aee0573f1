//! `GET /openapi.json`: the service's API as OpenAPI 3.1, generated from the same rule table
//! the guard enforces ([`crate::auth::Rule`]), so the document cannot list a route the
//! service does not serve, or miss one it does: every route, its method, its path
//! parameters, its paging parameters, who may call it (the security schemes: the session
//! cookie with its CSRF header, or a bearer token of the identity provider; the roles in the
//! description), and the answers it gives (JSON; errors as `{error, detail}`).

use serde_json::{Map, Value, json};

use crate::auth::{Allow, Rule};

/// Routes that answer a paged list (`limit`, `after`).
const PAGED: &[&str] = &[
    "/disclosures",
    "/inbox",
    "/quarantine",
    "/dash-assessments",
    "/property-requests",
    "/cases",
    "/engagement",
    "/actions",
    "/applications",
    "/checkpoints",
    "/access-log",
    "/ledger",
];

fn error_answer(description: &str) -> Value {
    json!({"description": description, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}})
}

fn operation(rule: &Rule) -> Value {
    let mut parameters: Vec<Value> = rule
        .path
        .split('/')
        .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
        .collect();
    if rule.method == "GET" && PAGED.contains(&rule.path) {
        parameters.push(json!({"name": "limit", "in": "query", "required": false, "schema": {"type": "integer", "minimum": 1}}));
        parameters.push(json!({"name": "after", "in": "query", "required": false, "schema": {"type": "string"}}));
    }
    let (security, who) = match rule.allow {
        Allow::Public => (json!([]), "Anyone.".to_owned()),
        Allow::AnyStaff => (json!([{"session": [], "csrf": []}, {"bearer": []}]), "Any logged-in staff member.".to_owned()),
        Allow::Roles(roles) => (
            json!([{"session": [], "csrf": []}, {"bearer": []}]),
            format!("Staff with one of the roles: {}.", roles.iter().map(|r| r.name()).collect::<Vec<_>>().join(", ")),
        ),
    };
    let mut responses = Map::new();
    let ok = if rule.method == "POST" { "201" } else { "200" };
    responses.insert(ok.into(), json!({"description": "done", "content": {"application/json": {"schema": {}}}}));
    if rule.method == "POST" {
        responses.insert("200".into(), json!({"description": "done", "content": {"application/json": {"schema": {}}}}));
        responses.insert("204".into(), json!({"description": "done, nothing to say"}));
    }
    if rule.path.starts_with("/login/oidc") {
        responses.insert("303".into(), json!({"description": "to the identity provider"}));
    }
    for (code, what) in [
        ("400", "the request is not valid (the answer names the field, never the value)"),
        ("401", "no valid login"),
        ("403", "forbidden: the role may not, the CSRF token is missing, or the information-sharing protocol refused"),
        ("404", "no such item"),
        ("408", "the request took too long"),
        ("409", "conflicts with the item's state"),
        ("410", "revoked by its sender"),
        ("413", "the body is too large"),
        ("422", "the Idempotency-Key was used for another request"),
        ("429", "locked after too many wrong passwords"),
        ("503", "a store or the broker cannot be reached now; nothing was done, try again"),
    ] {
        responses.insert(code.into(), error_answer(what));
    }
    let mut op = json!({
        "operationId": format!("{} {}", rule.method, rule.path),
        "description": who,
        "security": security,
        "parameters": parameters,
        "responses": responses,
    });
    if rule.method == "POST" {
        op["requestBody"] = json!({"required": false, "content": {"application/json": {"schema": {"type": "object"}}}});
    }
    op
}

/// The OpenAPI document of a service serving `rules`.
/// The console's pages ([`crate::console`]) are HTML for browsers, not API: left out.
pub fn document(title: &str, agency: &str, rules: &[Rule]) -> Value {
    let mut paths = Map::new();
    for rule in rules.iter().filter(|r| !crate::console::is_page(r.path)) {
        let entry = paths.entry(rule.path.to_owned()).or_insert_with(|| json!({}));
        entry[rule.method.to_lowercase()] = operation(rule);
    }
    json!({
        "openapi": "3.1.0",
        "info": {"title": title, "version": env!("CARGO_PKG_VERSION")},
        "paths": paths,
        "components": {
            "securitySchemes": {
                "session": {"type": "apiKey", "in": "cookie", "name": crate::auth::local::cookie_name(agency),
                    "description": "The session of POST /login or GET /login/oidc"},
                "csrf": {"type": "apiKey", "in": "header", "name": "X-CSRF-Token",
                    "description": "The session's csrf_token; required with the cookie on every request that changes something"},
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                    "description": "An access token of the partnership's identity provider"},
            },
            "schemas": {
                "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}, "detail": {"type": "string"}}},
            },
        },
    })
}
