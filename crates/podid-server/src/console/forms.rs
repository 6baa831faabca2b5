//! Changes from the browser (admin keys): `/console/associations/new` (create),
//! `…/{cluster}/{id}/edit` (role, target role, session tags, tags) and
//! `…/{cluster}/{id}/delete` (a confirmation page, then the POST). Every change goes
//! through the API's own core functions (validation and change audit); a validation
//! error is shown next to its field with the API's message.

use askama::Template;
use axum::body::Bytes;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use podid_api::association::{CreateAssociationRequest, Tags, UpdateAssociationRequest};
use podid_api::{validate, ApiError};
use podid_store::StoredAssociation;

use super::associations::detail_href;
use super::login::{field, store_failed};
use super::page::{message, render, see_other, Page};
use super::ConsoleState;
use crate::associations::{
    create_association, delete_association, tag_association, untag_association, update_association,
    Caller,
};
use crate::authz::Principal;
use crate::wire::RequestId;

/// What the form's inputs held, as typed (re-shown after an error).
#[derive(Debug, Default)]
struct Values {
    cluster_name: String,
    namespace: String,
    service_account: String,
    role_arn: String,
    target_role_arn: String,
    disable_session_tags: bool,
    /// `key=value` lines.
    tags: String,
}

impl Values {
    /// The inputs of a url-encoded form body.
    fn parse(body: &[u8]) -> Values {
        let get = |name| field(body, name).unwrap_or_default();
        Values {
            cluster_name: get("cluster_name").trim().to_owned(),
            namespace: get("namespace").trim().to_owned(),
            service_account: get("service_account").trim().to_owned(),
            role_arn: get("role_arn").trim().to_owned(),
            target_role_arn: get("target_role_arn").trim().to_owned(),
            disable_session_tags: field(body, "disable_session_tags").is_some(),
            tags: get("tags"),
        }
    }

    /// An association's current values (the edit form's start).
    fn of(a: &StoredAssociation) -> Values {
        Values {
            cluster_name: a.cluster.clone(),
            namespace: a.namespace.clone(),
            service_account: a.service_account.clone(),
            role_arn: a.role_arn.clone(),
            target_role_arn: a.target_role_arn.clone().unwrap_or_default(),
            disable_session_tags: a.disable_session_tags,
            tags: a.tags.iter().map(|(k, v)| format!("{k}={v}\n")).collect(),
        }
    }
}

/// The tags of the textarea: one `key=value` per line (blank lines skipped; the
/// value is everything after the first `=`).
fn parse_tags(text: &str) -> Result<Tags, String> {
    let mut tags = Tags::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            return Err(format!("tags line {}: expected key=value", n + 1));
        };
        let key = key.trim();
        if tags
            .insert(key.to_owned(), value.trim().to_owned())
            .is_some()
        {
            return Err(format!("tags line {}: key '{key}' is given twice", n + 1));
        }
    }
    Ok(tags)
}

/// `None` for an empty input.
fn given(value: &str) -> Option<String> {
    (!value.is_empty()).then(|| value.to_owned())
}

/// The form input an API error is about (by the field its message names), or
/// `form` for an error of the whole request.
fn field_of(error: &ApiError) -> &'static str {
    let m = error.message.as_str();
    [
        ("clusterName", "cluster_name"),
        ("No cluster found", "cluster_name"),
        ("namespace", "namespace"),
        ("serviceAccount", "service_account"),
        ("roleArn", "role_arn"),
        ("targetRoleArn", "target_role_arn"),
        ("tag", "tags"),
    ]
    .iter()
    .find(|(prefix, _)| m.starts_with(prefix))
    .map_or("form", |(_, input)| input)
}

/// A field's error on the form.
struct FieldError {
    field: &'static str,
    message: String,
}

impl FieldError {
    fn of(error: &ApiError) -> FieldError {
        FieldError {
            field: field_of(error),
            message: error.message.clone(),
        }
    }
}

#[derive(Template)]
#[template(path = "console/association_form.html")]
struct FormPage {
    page: Page,
    /// `None` on the create form; the association's cluster and id on the edit form.
    editing: Option<(String, String)>,
    /// The clusters the key may create in (the create form's select).
    clusters: Vec<String>,
    values: Values,
    error: Option<FieldError>,
}

impl FormPage {
    /// The message for input `name`, if the error is about it.
    fn error_for(&self, name: &str) -> Option<&str> {
        self.error
            .as_ref()
            .filter(|e| e.field == name)
            .map(|e| e.message.as_str())
    }
}

/// The session's key as the API's [`Principal`].
fn principal(page: &Page) -> Principal {
    Principal {
        access_key_id: page.key.key_id.clone(),
        role: page.key.role,
        clusters: page.key.clusters.clone(),
        node: None,
    }
}

/// 303 See Other to a built path.
fn redirect(location: &str) -> Response {
    match HeaderValue::from_str(location) {
        Ok(v) => (StatusCode::SEE_OTHER, [(header::LOCATION, v)]).into_response(),
        Err(_) => see_other("/console/associations"),
    }
}

/// The registered clusters the key may see, by name.
async fn cluster_names(console: &ConsoleState, page: &Page) -> Result<Vec<String>, Response> {
    let clusters = console
        .app
        .store
        .list_clusters()
        .await
        .map_err(|e| store_failed(&e))?;
    Ok(clusters
        .into_iter()
        .map(|c| c.name)
        .filter(|n| page.key.clusters.allows(n))
        .collect())
}

/// The create form with `values` and `error` (200 for a fresh form, 400 after an error).
async fn create_form(
    console: &ConsoleState,
    page: Page,
    values: Values,
    error: Option<FieldError>,
) -> Response {
    let clusters = match cluster_names(console, &page).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let status = form_status(&error);
    render(
        status,
        &FormPage {
            page,
            editing: None,
            clusters,
            values,
            error,
        },
    )
}

/// `GET /console/associations/new`.
pub(crate) async fn new_form(State(console): State<ConsoleState>, page: Page) -> Response {
    if let Some(refused) = page.admin_refusal() {
        return refused;
    }
    create_form(&console, page, Values::default(), None).await
}

/// `POST /console/associations/new`: creates through the API's core, then 303 to
/// the new association's page; an error shows the form again.
pub(crate) async fn create(
    State(console): State<ConsoleState>,
    page: Page,
    Extension(request_id): Extension<RequestId>,
    body: Bytes,
) -> Response {
    if let Some(refused) = post_refusal(&page, &body) {
        return refused;
    }
    let values = Values::parse(&body);
    let tags = match parse_tags(&values.tags) {
        Ok(t) => t,
        Err(m) => {
            let error = FieldError {
                field: "tags",
                message: m,
            };
            return create_form(&console, page, values, Some(error)).await;
        }
    };
    let req = CreateAssociationRequest {
        namespace: given(&values.namespace),
        service_account: given(&values.service_account),
        role_arn: given(&values.role_arn),
        target_role_arn: given(&values.target_role_arn),
        disable_session_tags: Some(values.disable_session_tags),
        tags: (!tags.is_empty()).then_some(tags),
        ..CreateAssociationRequest::default()
    };
    let who = principal(&page);
    let caller = Caller {
        principal: &who,
        request_id: &request_id,
    };
    if values.cluster_name.is_empty() {
        let error = FieldError {
            field: "cluster_name",
            message: "clusterName is required".to_owned(),
        };
        return create_form(&console, page, values, Some(error)).await;
    }
    match create_association(&console.app, caller, &values.cluster_name, &req).await {
        Ok(a) => redirect(&detail_href(&a.cluster, &a.id)),
        Err(e) => create_form(&console, page, values, Some(FieldError::of(&e))).await,
    }
}

/// The association at `path` if the key may see it, else the 404 page.
async fn found(
    console: &ConsoleState,
    page: &Page,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<StoredAssociation, Response> {
    let not_found = || {
        message(
            StatusCode::NOT_FOUND,
            "Not found",
            "There is no such association in a cluster this key may see.",
        )
    };
    let Ok(Path((cluster, id))) = path else {
        return Err(not_found());
    };
    if !page.key.clusters.allows(&cluster) {
        return Err(not_found());
    }
    match console.app.store.get_association(&cluster, &id).await {
        Ok(Some(a)) => Ok(a),
        Ok(None) => Err(not_found()),
        Err(e) => Err(store_failed(&e)),
    }
}

/// The CSRF and role checks of a changing POST: the 403 page when refused.
fn post_refusal(page: &Page, body: &[u8]) -> Option<Response> {
    page.csrf_refusal(field(body, "csrf_token").as_deref())
        .or_else(|| page.admin_refusal())
}

/// The association a changing POST is about, after its CSRF and role checks.
async fn changed(
    console: &ConsoleState,
    page: &Page,
    body: &[u8],
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<StoredAssociation, Response> {
    match post_refusal(page, body) {
        Some(refused) => Err(refused),
        None => found(console, page, path).await,
    }
}

/// The association an admin's form page is about (readers get the 403 page).
async fn shown(
    console: &ConsoleState,
    page: &Page,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<StoredAssociation, Response> {
    match page.admin_refusal() {
        Some(refused) => Err(refused),
        None => found(console, page, path).await,
    }
}

/// 400 when the form is shown again for an error, else 200.
fn form_status(error: &Option<FieldError>) -> StatusCode {
    if error.is_some() {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    }
}

/// The edit form of `a` with `values` and `error`.
fn edit_form(
    page: Page,
    a: &StoredAssociation,
    values: Values,
    error: Option<FieldError>,
) -> Response {
    let status = form_status(&error);
    render(
        status,
        &FormPage {
            page,
            editing: Some((a.cluster.clone(), a.id.clone())),
            clusters: Vec::new(),
            values,
            error,
        },
    )
}

/// `GET /console/associations/{cluster}/{id}/edit`.
pub(crate) async fn edit_page(
    State(console): State<ConsoleState>,
    page: Page,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Response {
    match shown(&console, &page, path).await {
        Ok(a) => edit_form(page, &a, Values::of(&a), None),
        Err(r) => r,
    }
}

/// `POST /console/associations/{cluster}/{id}/edit`: the role, target role and
/// session tags through UpdatePodIdentityAssociation (when changed), then removed
/// tags through UntagResource and new or changed ones through TagResource.
pub(crate) async fn edit(
    State(console): State<ConsoleState>,
    page: Page,
    Extension(request_id): Extension<RequestId>,
    path: Result<Path<(String, String)>, PathRejection>,
    body: Bytes,
) -> Response {
    let a = match changed(&console, &page, &body, path).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let mut values = Values::parse(&body);
    values.cluster_name = a.cluster.clone();
    values.namespace = a.namespace.clone();
    values.service_account = a.service_account.clone();
    let tags = match parse_tags(&values.tags).map_err(|m| FieldError {
        field: "tags",
        message: m,
    }) {
        Ok(t) => match validate::tags(&t) {
            Ok(()) => t,
            Err(e) => return edit_form(page, &a, values, Some(FieldError::of(&e))),
        },
        Err(e) => return edit_form(page, &a, values, Some(e)),
    };
    let who = principal(&page);
    let caller = Caller {
        principal: &who,
        request_id: &request_id,
    };
    match apply_edit(&console, caller, &a, &values, tags).await {
        Ok(()) => redirect(&detail_href(&a.cluster, &a.id)),
        Err(e) => edit_form(page, &a, values, Some(FieldError::of(&e))),
    }
}

/// The edit's changes to `a`, each through the API's core function.
async fn apply_edit(
    console: &ConsoleState,
    caller: Caller<'_>,
    a: &StoredAssociation,
    values: &Values,
    tags: Tags,
) -> Result<(), ApiError> {
    let state = &console.app;
    let target = given(&values.target_role_arn);
    if values.role_arn != a.role_arn
        || target != a.target_role_arn
        || values.disable_session_tags != a.disable_session_tags
    {
        let req = UpdateAssociationRequest {
            role_arn: Some(values.role_arn.clone()),
            target_role_arn: Some(values.target_role_arn.clone()),
            disable_session_tags: Some(values.disable_session_tags),
            ..UpdateAssociationRequest::default()
        };
        update_association(state, caller, &a.cluster, &a.id, &req).await?;
    }
    let removed: Vec<String> = a
        .tags
        .keys()
        .filter(|k| !tags.contains_key(*k))
        .cloned()
        .collect();
    if !removed.is_empty() {
        untag_association(state, caller, &a.cluster, &a.id, &removed).await?;
    }
    let set: Tags = tags
        .into_iter()
        .filter(|(k, v)| a.tags.get(k) != Some(v))
        .collect();
    if !set.is_empty() {
        tag_association(state, caller, &a.cluster, &a.id, Some(set)).await?;
    }
    Ok(())
}

#[derive(Template)]
#[template(path = "console/association_delete.html")]
struct DeletePage {
    page: Page,
    a: StoredAssociation,
    action: String,
}

/// `GET /console/associations/{cluster}/{id}/delete`: the confirmation.
pub(crate) async fn delete_page(
    State(console): State<ConsoleState>,
    page: Page,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Response {
    match shown(&console, &page, path).await {
        Ok(a) => {
            let action = format!("{}/delete", detail_href(&a.cluster, &a.id));
            render(StatusCode::OK, &DeletePage { page, a, action })
        }
        Err(r) => r,
    }
}

/// `POST /console/associations/{cluster}/{id}/delete`: deletes through the API's
/// core, then 303 to the list.
pub(crate) async fn delete(
    State(console): State<ConsoleState>,
    page: Page,
    Extension(request_id): Extension<RequestId>,
    path: Result<Path<(String, String)>, PathRejection>,
    body: Bytes,
) -> Response {
    let a = match changed(&console, &page, &body, path).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let who = principal(&page);
    let caller = Caller {
        principal: &who,
        request_id: &request_id,
    };
    match delete_association(&console.app, caller, &a.cluster, &a.id).await {
        Ok(_) => see_other("/console/associations"),
        Err(e) => message(
            StatusCode::from_u16(e.kind.status()).unwrap_or(StatusCode::BAD_REQUEST),
            "Not deleted",
            &e.message,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_key_value_lines() {
        let tags = parse_tags("team=a\r\n\n env = prod \nx=y=z\n").unwrap();
        assert_eq!(tags.get("team").map(String::as_str), Some("a"));
        assert_eq!(tags.get("env").map(String::as_str), Some("prod"));
        assert_eq!(tags.get("x").map(String::as_str), Some("y=z"));
        assert_eq!(
            parse_tags("ok=1\nnope").unwrap_err(),
            "tags line 2: expected key=value"
        );
        assert!(parse_tags("a=1\na=2").is_err());
        assert!(parse_tags("").unwrap().is_empty());
    }

    #[test]
    fn api_errors_land_next_to_their_input() {
        for (message, input) in [
            ("roleArn 'x' is invalid: must be", "role_arn"),
            ("targetRoleArn 'x' is invalid", "target_role_arn"),
            ("namespace is required", "namespace"),
            ("serviceAccount 'A' is invalid", "service_account"),
            ("tag key 'aws:x' is invalid", "tags"),
            ("No cluster found for name: x.", "cluster_name"),
            ("an association for this service account exists", "form"),
        ] {
            assert_eq!(
                field_of(&ApiError::invalid_parameter(message)),
                input,
                "{message}"
            );
        }
    }
}
