//! `GET /v1/models`: the models a request may name, in OpenAI's list shape,
//! which apps built on the SDKs ask for before anything else.

use axum::extract::State;
use axum::Json;
use serde_json::{json, Value};

use crate::http::AppState;

/// `GET /v1/models`.
#[utoipa::path(get, path = "/v1/models", tag = "openai",
    responses(
        (status = 200, description = "`{\"object\": \"list\", \"data\": [{\"id\", \"object\": \"model\", \"created\", \"owned_by\"}]}`: the models requests may name (`--allowed-model`, else the default model)"),
        (status = 401, description = "With auth on: no valid token"),
    ))]
pub async fn list(State(st): State<AppState>) -> Json<Value> {
    let models = if st.policy.allowed_models.is_empty() {
        vec![st.backend.default_model()]
    } else {
        st.policy.allowed_models.clone()
    };
    let data: Vec<Value> = models
        .into_iter()
        .map(|id| json!({ "id": id, "object": "model", "created": 0, "owned_by": "rill" }))
        .collect();
    Json(json!({ "object": "list", "data": data }))
}
