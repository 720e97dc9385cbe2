//! The REST mirror of the orchestrator API: JSON over HTTPS for tools that do not speak gRPC.
//!
//! Every route of [`ROUTES`] calls one method of [`OrchestratorService`], the code the gRPC
//! API runs, so validation, behaviour and authorization are the same. The request message is
//! made of the route's path parameters, its query parameters and, for routes that take one,
//! the JSON body: a parameter fills the request field of the same (proto3 JSON) name, an empty
//! query value leaves the field at its default, and a field given both in the path and the
//! body must agree. Bodies and replies are proto3 JSON (lowerCamelCase names, 64-bit integers
//! as strings, bytes in base64, enums by name; replies leave out fields at their default).
//! Bodies are read as JSON whatever their `Content-Type`, so `curl -d` works as is.
//!
//! Requests are routed by [warp]: each route of [`ROUTES`] becomes one filter (its path, whose
//! `{field}` segments it extracts, then its method, query, headers and body), the filters are
//! tried in the table's order, and a `recover` step turns what none of them took into a
//! refusal. The table is the only place a route is written: the router, the OpenAPI document
//! and the tests that keep them in step are all made from it.
//!
//! The REST port speaks the same TLS as gRPC, never plaintext: a user's client certificate
//! authenticates as it does over gRPC (the connection's [`ConnInfo`] goes into every request's
//! extensions), and every header is passed on as gRPC metadata, so `Authorization: Bearer
//! <token>` works too. HTTP/1.1 and HTTP/2 are both served (ALPN, else the connection's
//! preface decides) by hyper, with the warp router as each connection's service.
//!
//! A refusal is `{"code": "NOT_FOUND", "message": "…"}`: `code` is the gRPC status code's
//! name and the HTTP status follows from it by [`http_status`]. FAILED_PRECONDITION (nothing
//! to commit, no intent to explain from) is 409 Conflict rather than 412: HTTP keeps 412 for
//! failed conditional headers (`If-Match`), which this API has none of, while 409 says the
//! resource's state is in the way; ABORTED (a stale `expectedRevision`) is 409 too, and
//! `code` tells them apart. The REST layer adds its own: 400 INVALID_ARGUMENT for malformed
//! JSON or parameters, 404 NOT_FOUND for an unknown path, 405 UNIMPLEMENTED (with `Allow`)
//! for a method the path does not take, 413 RESOURCE_EXHAUSTED for a body over the limit
//! (16 MiB, as gRPC), whether its declared length is over or, unstated, it grows past it.
//!
//! `GET /v1/watch` is a stream of Server-Sent Events: a comment opens it, each event's `data`
//! is one `Event` in proto3 JSON, a comment every 15 s of quiet keeps idle connections open,
//! and if the watcher falls behind, an `error` event carrying a refusal ends the stream.
//! `GET /healthz` and `GET /openapi.json` (the OpenAPI 3.1 document of every route, made
//! from [`ROUTES`] and the proto descriptors) need no credentials.
//!
//! [warp]: https://docs.rs/warp

mod openapi;

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::time::Duration;

use hyper::body::{Buf, Bytes, Incoming};
use hyper::header::{ALLOW, CONTENT_TYPE, HeaderValue};
use hyper::service::service_fn;
use hyper::{HeaderMap, Method, Request, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use palisade_api::pb::orchestrator::v1::orchestrator_server::Orchestrator;
use palisade_pki::{ConnInfo, ServerTls, TlsConn, incoming};
use percent_encoding::percent_decode_str;
use prost_types::field_descriptor_proto::{Label, Type};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio_stream::StreamExt as _;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;
use tonic::metadata::MetadataMap;
use tower::Service as _;
use tracing::{Instrument as _, debug, info_span, warn};
use warp::filters::BoxedFilter;
use warp::filters::path::FullPath;
use warp::reject::{PayloadTooLarge, Reject, Rejection};
use warp::reply::Response;
use warp::sse::Event;
use warp::{Filter as _, Reply as _};

use crate::orchestrator::OrchestratorService;
use crate::service::Core;

/// How long a client has for its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long open connections get to finish at shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// How long an event stream may be quiet before it gets a comment, so proxies keep it open.
const SSE_KEEPALIVE: Duration = Duration::from_secs(15);

/// Who may call a route.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Anyone, without credentials.
    Public,
    /// Any orchestrator user.
    Read,
    /// Admins; read-only users get 403.
    Admin,
}

/// What a route does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    /// Calls the orchestrator RPC of this name.
    Rpc(&'static str),
    /// Answers that the server is up.
    Health,
    /// Serves the OpenAPI document.
    OpenApi,
}

impl Operation {
    /// The RPC's name, or the REST-only operation's: the OpenAPI `operationId`.
    pub fn name(self) -> &'static str {
        match self {
            Operation::Rpc(rpc) => rpc,
            Operation::Health => "Health",
            Operation::OpenApi => "OpenApi",
        }
    }
}

/// One route of the REST API.
pub struct Route {
    /// The HTTP method.
    pub method: Method,
    /// The path; a `{field}` segment fills the request field of that name.
    pub path: &'static str,
    /// What it does.
    pub operation: Operation,
    /// Who may call it.
    pub access: Access,
    /// Whether the request message is read from a JSON body.
    pub body: bool,
    /// The query parameters it takes, each a request field.
    pub query: &'static [&'static str],
    /// What it does, in a few words.
    pub summary: &'static str,
    handler: Handler,
}

impl Route {
    const fn new(
        method: Method,
        path: &'static str,
        operation: Operation,
        access: Access,
        summary: &'static str,
        handler: Handler,
    ) -> Route {
        Route {
            method,
            path,
            operation,
            access,
            body: false,
            query: &[],
            summary,
            handler,
        }
    }

    const fn with_body(mut self) -> Route {
        self.body = true;
        self
    }

    const fn with_query(mut self, query: &'static [&'static str]) -> Route {
        self.query = query;
        self
    }
}

type Reply = Pin<Box<dyn Future<Output = Result<Response, ApiError>> + Send>>;

/// How a route answers.
#[derive(Clone, Copy)]
struct Handler {
    /// The `Orchestrator` trait method it calls, checked against the route's RPC.
    method: &'static str,
    call: fn(Arc<Api>, Call) -> Reply,
}

fn reply(f: impl Future<Output = Result<Response, ApiError>> + Send + 'static) -> Reply {
    Box::pin(f)
}

/// The handler of a unary RPC: the request message in, the reply as JSON out.
macro_rules! unary {
    ($method:ident) => {
        Handler {
            method: stringify!($method),
            call: |api, call| {
                reply(async move {
                    let response = api.service.$method(call.request()?).await?;
                    json_response(response.get_ref())
                })
            },
        }
    };
}

use Access::{Admin, Public, Read};
use Operation::Rpc;

/// Every route the REST API serves; the router and the OpenAPI document are both made from
/// it.
pub static ROUTES: &[Route] = &[
    Route::new(
        Method::GET,
        "/healthz",
        Operation::Health,
        Public,
        "Whether the server is up",
        Handler {
            method: "",
            call: health,
        },
    ),
    Route::new(
        Method::GET,
        "/openapi.json",
        Operation::OpenApi,
        Public,
        "This API's OpenAPI document",
        Handler {
            method: "",
            call: openapi_document,
        },
    ),
    Route::new(
        Method::GET,
        "/v1/inventory",
        Rpc("GetInventory"),
        Read,
        "Devices, projects and workloads",
        unary!(get_inventory),
    ),
    Route::new(
        Method::POST,
        "/v1/inventory",
        Rpc("ApplyInventory"),
        Admin,
        "Creates or replaces the devices, projects and workloads given, in one commit",
        unary!(apply_inventory),
    )
    .with_body(),
    Route::new(
        Method::PUT,
        "/v1/devices/{name}",
        Rpc("PutDevice"),
        Admin,
        "Creates or replaces a device",
        unary!(put_device),
    )
    .with_body(),
    Route::new(
        Method::DELETE,
        "/v1/devices/{name}",
        Rpc("DeleteDevice"),
        Admin,
        "Deletes a device",
        unary!(delete_device),
    ),
    Route::new(
        Method::PUT,
        "/v1/projects/{name}",
        Rpc("PutProject"),
        Admin,
        "Creates or replaces a project",
        unary!(put_project),
    )
    .with_body(),
    Route::new(
        Method::DELETE,
        "/v1/projects/{name}",
        Rpc("DeleteProject"),
        Admin,
        "Deletes a project",
        unary!(delete_project),
    ),
    Route::new(
        Method::PUT,
        "/v1/projects/{project}/workloads/{name}",
        Rpc("PutWorkload"),
        Admin,
        "Creates or replaces a workload",
        unary!(put_workload),
    )
    .with_body(),
    Route::new(
        Method::DELETE,
        "/v1/projects/{project}/workloads/{name}",
        Rpc("DeleteWorkload"),
        Admin,
        "Deletes a workload",
        unary!(delete_workload),
    ),
    Route::new(
        Method::POST,
        "/v1/apply",
        Rpc("Apply"),
        Admin,
        "Creates or updates policy objects from documents",
        unary!(apply),
    )
    .with_body(),
    Route::new(
        Method::GET,
        "/v1/objects",
        Rpc("GetObjects"),
        Read,
        "Policy objects, committed or drafted",
        unary!(get_objects),
    )
    .with_query(&["kind", "scope", "name", "drafts", "format"]),
    Route::new(
        Method::DELETE,
        "/v1/objects/{kind}/{name}",
        Rpc("DeleteObject"),
        Admin,
        "Deletes a policy object",
        unary!(delete_object),
    )
    .with_query(&["scope"]),
    Route::new(
        Method::PUT,
        "/v1/drafting",
        Rpc("SetDrafting"),
        Admin,
        "Turns drafting on or off for a scope",
        unary!(set_drafting),
    )
    .with_body(),
    Route::new(
        Method::GET,
        "/v1/diff",
        Rpc("Diff"),
        Read,
        "A scope's drafts against what is committed",
        unary!(diff),
    )
    .with_query(&["scope"]),
    Route::new(
        Method::POST,
        "/v1/commit",
        Rpc("Commit"),
        Admin,
        "Commits a scope's drafts",
        unary!(commit),
    )
    .with_body(),
    Route::new(
        Method::POST,
        "/v1/revert",
        Rpc("Revert"),
        Admin,
        "Drops a scope's drafts",
        unary!(revert),
    )
    .with_body(),
    Route::new(
        Method::POST,
        "/v1/explain",
        Rpc("Explain"),
        Read,
        "The verdict for one connection, and why",
        unary!(explain),
    )
    .with_body(),
    Route::new(
        Method::POST,
        "/v1/flows/query",
        Rpc("QueryFlows"),
        Read,
        "Flow totals per group (tag pairs, rules, devices...) or the flows of a time window",
        unary!(query_flows),
    )
    .with_body(),
    Route::new(
        Method::POST,
        "/v1/flows/what-if",
        Rpc("WhatIf"),
        Read,
        "Recorded sessions whose verdict a scope's drafts would change",
        unary!(what_if),
    )
    .with_body(),
    Route::new(
        Method::GET,
        "/v1/commits",
        Rpc("ListCommits"),
        Read,
        "Recent commits and their state on each device",
        unary!(list_commits),
    )
    .with_query(&["limit"]),
    Route::new(
        Method::GET,
        "/v1/commits/{generation}",
        Rpc("GetCommit"),
        Read,
        "One commit and its state on each device",
        unary!(get_commit),
    ),
    Route::new(
        Method::GET,
        "/v1/devices",
        Rpc("ListDevices"),
        Read,
        "Every device's state",
        unary!(list_devices),
    ),
    Route::new(
        Method::GET,
        "/v1/watch",
        Rpc("Watch"),
        Read,
        "Commit and device changes as they happen (Server-Sent Events)",
        Handler {
            method: "watch",
            call: watch_events,
        },
    ),
    Route::new(
        Method::POST,
        "/v1/enrollment-tokens",
        Rpc("CreateEnrollmentToken"),
        Admin,
        "A one-time token for a device to enroll with",
        unary!(create_enrollment_token),
    )
    .with_body(),
    Route::new(
        Method::POST,
        "/v1/devices/{name}/revoke",
        Rpc("RevokeDevice"),
        Admin,
        "Revokes a device's certificates",
        unary!(revoke_device),
    ),
    Route::new(
        Method::POST,
        "/v1/api-tokens",
        Rpc("CreateApiToken"),
        Admin,
        "A bearer token for an API user",
        unary!(create_api_token),
    )
    .with_body(),
];

/// The HTTP status of a refusal with this gRPC code (see the module docs).
pub fn http_status(code: Code) -> StatusCode {
    match code {
        Code::Ok => StatusCode::OK,
        Code::InvalidArgument => StatusCode::BAD_REQUEST,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::Aborted | Code::AlreadyExists | Code::FailedPrecondition => StatusCode::CONFLICT,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The canonical name of a gRPC code, as in `google.rpc.Code`: the `code` of an error body.
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// A refusal, as the REST API answers it.
#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    code: Code,
    message: String,
    /// The methods the path takes, for 405.
    allow: Option<String>,
}

impl Reject for ApiError {}

impl ApiError {
    fn new(status: StatusCode, code: Code, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            allow: None,
        }
    }

    fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, Code::InvalidArgument, message)
    }

    fn too_large(max: u64) -> ApiError {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            Code::ResourceExhausted,
            format!("the body is over the limit of {max} bytes"),
        )
    }

    fn body(&self) -> Value {
        serde_json::json!({"code": code_name(self.code), "message": self.message})
    }

    fn response(&self) -> Response {
        let mut response = bytes_response(
            self.status,
            "application/json",
            Bytes::from(self.body().to_string()),
        );
        if let Some(allow) = self
            .allow
            .as_deref()
            .and_then(|a| HeaderValue::from_str(a).ok())
        {
            response.headers_mut().insert(ALLOW, allow);
        }
        response
    }
}

impl From<tonic::Status> for ApiError {
    fn from(status: tonic::Status) -> ApiError {
        ApiError::new(http_status(status.code()), status.code(), status.message())
    }
}

/// A request for a route's path with a method the path does not take.
#[derive(Debug)]
struct WrongMethod {
    path: String,
    method: Method,
    /// Every method the path takes, as `Allow` lists them.
    allow: Arc<str>,
}

impl Reject for WrongMethod {}

fn bytes_response(status: StatusCode, content_type: &'static str, body: Bytes) -> Response {
    let mut response = Response::new(body.into());
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

fn json_response(message: &impl Serialize) -> Result<Response, ApiError> {
    let body = serde_json::to_vec(message).map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            Code::Internal,
            format!("encoding the reply: {e}"),
        )
    })?;
    Ok(bytes_response(
        StatusCode::OK,
        "application/json",
        Bytes::from(body),
    ))
}

/// A request on its way to the service.
struct Call {
    /// The request message in proto3 JSON: the body with the parameters merged in.
    message: Value,
    /// The body as sent, to say where in it a problem is.
    body: Bytes,
    /// The request message's name, for error messages.
    input: String,
    headers: HeaderMap,
    conn: Option<ConnInfo>,
}

impl Call {
    /// The gRPC request: the message, the headers as metadata and the connection's identity.
    fn request<T: DeserializeOwned>(self) -> Result<tonic::Request<T>, ApiError> {
        let message = T::deserialize(&self.message).map_err(|e| {
            // The parameters were checked as they were read, so the body is at fault; reading
            // the text again says where in it.
            let located = serde_json::from_slice::<T>(&self.body)
                .err()
                .filter(|_| !is_blank(&self.body));
            ApiError::bad_request(format!(
                "the body is not a valid {} message: {}",
                self.input,
                located.map_or_else(|| e.to_string(), |l| l.to_string())
            ))
        })?;
        let mut request = tonic::Request::new(message);
        *request.metadata_mut() = MetadataMap::from_headers(self.headers);
        if let Some(conn) = self.conn {
            request.extensions_mut().insert(conn);
        }
        Ok(request)
    }
}

fn is_blank(body: &[u8]) -> bool {
    body.iter().all(u8::is_ascii_whitespace)
}

/// How a parameter's text becomes its field's JSON value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Param {
    Text,
    Bool,
    Unsigned { max: u64 },
}

impl Param {
    fn value(self, name: &str, text: &str) -> Result<Value, ApiError> {
        match self {
            Param::Text => Ok(Value::String(text.into())),
            Param::Bool => match text {
                "true" => Ok(Value::Bool(true)),
                "false" => Ok(Value::Bool(false)),
                _ => Err(ApiError::bad_request(format!(
                    "parameter `{name}`: expected true or false, not `{text}`"
                ))),
            },
            Param::Unsigned { max } => match text.parse::<u64>() {
                Ok(n) if n <= max => Ok(Value::from(n)),
                _ => Err(ApiError::bad_request(format!(
                    "parameter `{name}`: expected a whole number from 0 to {max}, not `{text}`"
                ))),
            },
        }
    }
}

/// The field a `{field}` segment of a route's path names.
fn param_of(segment: &'static str) -> Option<&'static str> {
    segment.strip_prefix('{')?.strip_suffix('}')
}

/// The `{field}` parameters of a route's path, in order.
fn path_params(path: &'static str) -> impl Iterator<Item = &'static str> {
    path.split('/').filter_map(param_of)
}

/// A route's path parameters by field name, as the path has them (percent-encoded).
type PathParams = Vec<(&'static str, String)>;

/// A route with its parameters typed from the proto.
struct Compiled {
    route: &'static Route,
    params: HashMap<&'static str, Param>,
    /// The request message's name.
    input: String,
}

impl Compiled {
    /// Checks the route against the proto: its RPC exists and its handler calls it, and each
    /// parameter names a field a parameter can carry. A mistake in [`ROUTES`] is a bug, so it
    /// panics (a unit test builds every route).
    fn new(route: &'static Route, protos: &openapi::Protos) -> Compiled {
        let mut params = HashMap::new();
        let mut input = String::new();
        if let Operation::Rpc(rpc) = route.operation {
            let (_, method) = protos
                .method(rpc)
                .unwrap_or_else(|| panic!("route {}: no RPC {rpc}", route.path));
            assert_eq!(
                route.handler.method.replace('_', ""),
                rpc.to_ascii_lowercase(),
                "route {}: the handler does not call {rpc}",
                route.path
            );
            let (_, message) = protos
                .message(method.input_type())
                .unwrap_or_else(|| panic!("route {}: no message for {rpc}", route.path));
            input = message.name().to_owned();
            for name in path_params(route.path).chain(route.query.iter().copied()) {
                let field = message
                    .field
                    .iter()
                    .find(|f| f.json_name() == name)
                    .unwrap_or_else(|| {
                        panic!(
                            "route {}: {} has no field {name}",
                            route.path,
                            message.name()
                        )
                    });
                let param = match (field.label(), field.r#type()) {
                    (Label::Repeated, _) => None,
                    (_, Type::String) => Some(Param::Text),
                    (_, Type::Bool) => Some(Param::Bool),
                    (_, Type::Uint32 | Type::Fixed32) => Some(Param::Unsigned {
                        max: u64::from(u32::MAX),
                    }),
                    (_, Type::Uint64 | Type::Fixed64) => Some(Param::Unsigned { max: u64::MAX }),
                    _ => None,
                };
                let param = param.unwrap_or_else(|| {
                    panic!(
                        "route {}: parameter {name} has a type parameters do not carry",
                        route.path
                    )
                });
                params.insert(name, param);
            }
        }
        Compiled {
            route,
            params,
            input,
        }
    }

    /// The request message: the body with the path's parameters (still percent-encoded) and
    /// the query's (decoded) merged in.
    fn message(
        &self,
        body: &[u8],
        path: &[(&'static str, String)],
        query: &[(String, String)],
    ) -> Result<Value, ApiError> {
        let mut object = if is_blank(body) {
            Map::new()
        } else {
            match serde_json::from_slice(body) {
                Ok(Value::Object(object)) => object,
                Ok(_) => {
                    return Err(ApiError::bad_request(format!(
                        "the body must be a JSON object: the {} message",
                        self.input
                    )));
                }
                Err(e) => {
                    return Err(ApiError::bad_request(format!(
                        "the body is not valid JSON: {e}"
                    )));
                }
            }
        };
        for (name, text) in path {
            let text = percent_decode_str(text).decode_utf8().map_err(|_| {
                ApiError::bad_request(format!("parameter `{name}` is not UTF-8 once decoded"))
            })?;
            let value = self.params[name].value(name, &text)?;
            match object.get(*name) {
                Some(given) if *given != value => {
                    return Err(ApiError::bad_request(format!(
                        "`{name}` is `{text}` in the path but {given} in the body"
                    )));
                }
                _ => {}
            }
            object.insert((*name).into(), value);
        }
        let mut seen = Vec::new();
        for (name, text) in query {
            let Some(name) = self.route.query.iter().copied().find(|q| q == name) else {
                return Err(ApiError::bad_request(match self.route.query {
                    [] => format!("unknown query parameter `{name}`: this route takes none"),
                    known => format!(
                        "unknown query parameter `{name}`: expected one of {}",
                        known.join(", ")
                    ),
                }));
            };
            if seen.contains(&name) {
                return Err(ApiError::bad_request(format!(
                    "query parameter `{name}` is given twice"
                )));
            }
            seen.push(name);
            if !text.is_empty() {
                object.insert(name.into(), self.params[name].value(name, text)?);
            }
        }
        Ok(Value::Object(object))
    }
}

/// What every route's handler shares.
struct Api {
    service: OrchestratorService,
    openapi: Bytes,
    shutdown: watch::Receiver<bool>,
}

/// The REST API as one warp filter: the routes of [`ROUTES`] in order; a refusal for what one
/// of them took but refused, or what only matched a path of the table; and 404 for the rest.
fn router(
    core: Arc<Core>,
    max_body: u64,
    shutdown: watch::Receiver<bool>,
) -> BoxedFilter<(Response,)> {
    let protos = openapi::Protos::load();
    let openapi = serde_json::to_vec_pretty(&openapi::document(&protos, ROUTES))
        .expect("a JSON value encodes");
    let api = Arc::new(Api {
        service: OrchestratorService::new(core),
        openapi: Bytes::from(openapi),
        shutdown,
    });
    let routes = ROUTES
        .iter()
        .map(|route| route_filter(&api, Compiled::new(route, &protos), max_body))
        .reduce(|a, b| a.or(b).unify().boxed())
        .expect("the table has routes");
    // A request no route's path matched is left rejected as not found, for the catch-all
    // below, which knows the path.
    let refused = routes
        .recover(move |rejection: Rejection| async move {
            if rejection.is_not_found() {
                Err(rejection)
            } else {
                Ok(refusal(&rejection, max_body))
            }
        })
        .unify();
    let unrouted = warp::path::full().map(|path: FullPath| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            Code::NotFound,
            format!("no route {}; GET /openapi.json lists them", path.as_str()),
        )
        .response()
    });
    refused.or(unrouted).unify().boxed()
}

/// One route: its requests made into a [`Call`] of its handler.
fn route_filter(api: &Arc<Api>, compiled: Compiled, max_body: u64) -> BoxedFilter<(Response,)> {
    let route = compiled.route;
    let allow = ROUTES
        .iter()
        .filter(|r| r.path == route.path)
        .map(|r| r.method.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    let body = if route.body {
        body(max_body)
    } else {
        warp::any().map(Bytes::new).boxed()
    };
    let (api, compiled) = (Arc::clone(api), Arc::new(compiled));
    matcher(route, allow.into())
        .and(warp::query::<Vec<(String, String)>>())
        .and(warp::header::headers_cloned())
        .and(warp::ext::optional::<ConnInfo>())
        .and(body)
        .and_then(
            move |path: PathParams,
                  query: Vec<(String, String)>,
                  headers: HeaderMap,
                  conn: Option<ConnInfo>,
                  body: Bytes| {
                let (api, compiled) = (Arc::clone(&api), Arc::clone(&compiled));
                async move {
                    let call = Call {
                        message: compiled
                            .message(&body, &path, &query)
                            .map_err(warp::reject::custom)?,
                        body,
                        input: compiled.input.clone(),
                        headers,
                        conn,
                    };
                    (route.handler.call)(api, call)
                        .await
                        .map_err(warp::reject::custom)
                }
            },
        )
        .boxed()
}

/// The filter that takes a route's requests: its path, whose `{field}` segments it extracts,
/// then its method. A request for the path with another method is refused with the methods
/// the path does `allow`.
fn matcher(route: &'static Route, allow: Arc<str>) -> BoxedFilter<(PathParams,)> {
    let mut path = warp::any().map(PathParams::new).boxed();
    for segment in route.path.split('/').skip(1) {
        path = match param_of(segment) {
            Some(name) => path
                .and(warp::path::param::<String>())
                .map(move |mut params: PathParams, text| {
                    params.push((name, text));
                    params
                })
                .boxed(),
            None => path.and(warp::path(segment)).boxed(),
        };
    }
    let method = warp::method()
        .and(warp::path::full())
        .and_then(move |method: Method, path: FullPath| {
            let allow = Arc::clone(&allow);
            async move {
                if method == route.method {
                    Ok(())
                } else {
                    Err(warp::reject::custom(WrongMethod {
                        path: path.as_str().to_owned(),
                        method,
                        allow,
                    }))
                }
            }
        })
        .untuple_one();
    path.and(warp::path::end()).and(method).boxed()
}

/// The body, refused with 413 past `max` bytes: at once if its declared length is over, else
/// (a chunked or HTTP/2 body of unstated length) once it grows past.
fn body(max: u64) -> BoxedFilter<(Bytes,)> {
    let unstated = warp::header::optional::<String>("content-length")
        .and_then(|length: Option<String>| async move {
            match length {
                None => Ok(()),
                // A stated length is `content_length_limit`'s to check.
                Some(_) => Err(warp::reject::not_found()),
            }
        })
        .untuple_one();
    warp::body::content_length_limit(max)
        .or(unstated)
        .unify()
        .and(warp::body::stream())
        .and_then(move |stream| read_body(stream, max))
        .boxed()
}

/// Reads a body whole, counting it as it arrives.
async fn read_body(
    stream: impl tokio_stream::Stream<Item = Result<impl Buf, warp::Error>>,
    max: u64,
) -> Result<Bytes, Rejection> {
    let mut stream = pin!(stream);
    let mut body = Vec::new();
    while let Some(chunk) = stream.next().await {
        let mut chunk = chunk.map_err(|e| {
            warp::reject::custom(ApiError::bad_request(format!("reading the body: {e}")))
        })?;
        if (body.len() + chunk.remaining()) as u64 > max {
            return Err(warp::reject::custom(ApiError::too_large(max)));
        }
        while chunk.has_remaining() {
            let part = chunk.chunk();
            body.extend_from_slice(part);
            chunk.advance(part.len());
        }
    }
    Ok(Bytes::from(body))
}

/// The answer to a request a route of the table took but refused, or whose path a route
/// takes with another method.
fn refusal(rejection: &Rejection, max_body: u64) -> Response {
    if let Some(e) = rejection.find::<ApiError>() {
        return e.response();
    }
    let e = if rejection.find::<PayloadTooLarge>().is_some() {
        ApiError::too_large(max_body)
    } else if let Some(WrongMethod {
        path,
        method,
        allow,
    }) = rejection.find()
    {
        ApiError {
            allow: Some(allow.to_string()),
            ..ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                Code::Unimplemented,
                format!("{path} takes {allow}, not {method}"),
            )
        }
    } else {
        // The routes' filters reject with nothing else that a request can cause.
        warn!("a REST request was rejected unexpectedly: {rejection:?}");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            Code::Internal,
            format!("the request was rejected: {rejection:?}"),
        )
    };
    e.response()
}

fn health(_: Arc<Api>, _: Call) -> Reply {
    reply(async {
        Ok(bytes_response(
            StatusCode::OK,
            "application/json",
            Bytes::from_static(br#"{"status":"SERVING"}"#),
        ))
    })
}

fn openapi_document(api: Arc<Api>, _: Call) -> Reply {
    reply(async move {
        Ok(bytes_response(
            StatusCode::OK,
            "application/json",
            api.openapi.clone(),
        ))
    })
}

type EventStream = <OrchestratorService as Orchestrator>::WatchStream;
type Events = mpsc::Sender<Result<Event, Infallible>>;

fn watch_events(api: Arc<Api>, call: Call) -> Reply {
    reply(async move {
        let events = api.service.watch(call.request()?).await?.into_inner();
        // The watch's stream is not `Sync`, as warp's bodies must be: a task passes it on.
        let (tx, rx) = mpsc::channel(16);
        tokio::spawn(send_events(events, tx, api.shutdown.clone()));
        // The comment tells the client at once that the watch is on.
        let opening = tokio_stream::once(Ok(Event::default().comment("watching")));
        let events = warp::sse::keep_alive()
            .interval(SSE_KEEPALIVE)
            .text("watching")
            .stream(opening.chain(ReceiverStream::new(rx)));
        Ok(warp::sse::reply(events).into_response())
    })
}

/// Passes the watch's events on as Server-Sent Events until the client leaves, the watch ends
/// or the server stops.
async fn send_events(mut events: EventStream, tx: Events, mut shutdown: watch::Receiver<bool>) {
    loop {
        let (event, last) = tokio::select! {
            event = events.next() => match event {
                Some(Ok(event)) => match Event::default().json_data(&event) {
                    Ok(event) => (event, false),
                    Err(e) => {
                        warn!("could not encode an event: {e}");
                        continue;
                    }
                },
                Some(Err(status)) => {
                    let refusal = ApiError::from(status).body().to_string();
                    (Event::default().event("error").data(refusal), true)
                }
                None => return,
            },
            () = tx.closed() => return,
            () = stopped(&mut shutdown) => return,
        };
        if tx.send(Ok(event)).await.is_err() || last {
            return;
        }
    }
}

/// Serves the REST API on `listener` over `tls` until `shutdown` turns true; bodies over
/// `max_body` bytes are refused. Open connections then get a few seconds to finish.
pub async fn serve(
    core: Arc<Core>,
    listener: TcpListener,
    tls: ServerTls,
    max_body: usize,
    mut shutdown: watch::Receiver<bool>,
) {
    let routes = router(core, max_body as u64, shutdown.clone());
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // The timer bounds how long HTTP/1.1 clients may take to send their headers.
    builder.http1().timer(TokioTimer::new());
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Duration::from_secs(20))
        .keep_alive_timeout(Duration::from_secs(20));
    let builder = Arc::new(builder);
    let mut connections = incoming(listener, tls, HANDSHAKE_TIMEOUT);
    let mut open = JoinSet::new();
    loop {
        let conn = tokio::select! {
            conn = connections.next() => conn,
            Some(_) = open.join_next(), if !open.is_empty() => continue,
            () = stopped(&mut shutdown) => break,
        };
        // The stream never ends nor fails; this is for form's sake.
        let Some(Ok(conn)) = conn else { break };
        open.spawn(serve_connection(
            routes.clone(),
            Arc::clone(&builder),
            conn,
            shutdown.clone(),
        ));
    }
    let drain = async { while open.join_next().await.is_some() {} };
    if tokio::time::timeout(SHUTDOWN_GRACE, drain).await.is_err() {
        warn!(
            connections = open.len(),
            "REST connections still open at shutdown were cut"
        );
    }
}

/// Resolves once the server is told to stop (or the sender is gone).
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns is not `Send`; drop it here.
    let _ = shutdown.wait_for(|s| *s).await;
}

async fn serve_connection(
    routes: BoxedFilter<(Response,)>,
    builder: Arc<auto::Builder<TokioExecutor>>,
    conn: TlsConn,
    mut shutdown: watch::Receiver<bool>,
) {
    let info = conn.info().clone();
    let peer = info.remote_addr;
    let routes = warp::service(routes);
    let service = service_fn(move |mut request: Request<Incoming>| {
        let span =
            info_span!("rest", method = %request.method(), path = %request.uri().path(), ?peer);
        request.extensions_mut().insert(info.clone());
        let answer = routes.clone().call(request);
        async move {
            let response = answer.await?;
            debug!(status = response.status().as_u16(), "answered");
            Ok::<_, Infallible>(response)
        }
        .instrument(span)
    });
    let connection = builder.serve_connection(TokioIo::new(conn), service);
    tokio::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        () = stopped(&mut shutdown) => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(e) = result {
        debug!(?peer, "REST connection ended: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::FleetConfig;
    use crate::serve::{self, ServeConfig};

    fn compiled() -> Vec<Compiled> {
        let protos = openapi::Protos::load();
        ROUTES.iter().map(|r| Compiled::new(r, &protos)).collect()
    }

    /// A request path for a route, each `{field}` filled in.
    fn sample(path: &'static str) -> String {
        path.split('/')
            .map(|s| if param_of(s).is_some() { "1" } else { s })
            .collect::<Vec<_>>()
            .join("/")
    }

    #[test]
    fn every_rpc_has_one_route_and_parameters_take_their_field_types() {
        // Compiling the routes checks each against the proto.
        let routes = compiled();
        let protos = openapi::Protos::load();
        let mut rpcs: Vec<&str> = protos.rpcs().collect();
        let mut routed: Vec<&str> = ROUTES
            .iter()
            .filter_map(|r| match r.operation {
                Operation::Rpc(rpc) => Some(rpc),
                _ => None,
            })
            .collect();
        rpcs.sort_unstable();
        routed.sort_unstable();
        assert_eq!(routed, rpcs);
        let param = |path: &str, name: &str| {
            routes.iter().find(|c| c.route.path == path).unwrap().params[name]
        };
        assert_eq!(
            param("/v1/commits/{generation}", "generation"),
            Param::Unsigned { max: u64::MAX }
        );
        assert_eq!(
            param("/v1/commits", "limit"),
            Param::Unsigned {
                max: u64::from(u32::MAX)
            }
        );
        assert_eq!(param("/v1/objects", "drafts"), Param::Bool);
        assert_eq!(param("/v1/objects", "scope"), Param::Text);
    }

    #[tokio::test]
    async fn each_route_takes_its_requests_and_no_other_route_does() {
        for a in ROUTES {
            let path = sample(a.path);
            for b in ROUTES {
                let taken = warp::test::request()
                    .method(a.method.as_str())
                    .path(&path)
                    .matches(&matcher(b, Arc::from("")))
                    .await;
                assert_eq!(
                    taken,
                    std::ptr::eq(a, b),
                    "{} {path} and the route {} {}",
                    a.method,
                    b.method,
                    b.path
                );
            }
        }
    }

    #[tokio::test]
    async fn the_router_serves_the_table_and_refuses_the_rest() {
        let data = tempfile::tempdir().unwrap();
        let running = serve::start(ServeConfig {
            snmp: None,
            telemetry: Default::default(),
            data: data.path().to_path_buf(),
            grpc_listen: "127.0.0.1:0".parse().unwrap(),
            http_listen: None,
            hosts: Vec::new(),
            server_cert_validity: crate::serve::SERVER_CERT_VALIDITY,
            fleet: FleetConfig::default(),
        })
        .await
        .unwrap();
        let (_stop, shutdown) = watch::channel(false);
        let routes = router(Arc::clone(&running.core), 64, shutdown);
        let refusal = |answer: &hyper::Response<Bytes>| {
            let body: Value = serde_json::from_slice(answer.body()).unwrap();
            (answer.status(), body["code"].as_str().unwrap().to_owned())
        };

        // Every route of the table is served: without credentials, public routes answer and
        // the others refuse as their RPC does, not as an unknown path or method.
        for route in ROUTES {
            let answer = warp::test::request()
                .method(route.method.as_str())
                .path(&sample(route.path))
                .reply(&routes)
                .await;
            let expected = match route.access {
                Access::Public => StatusCode::OK,
                Access::Read | Access::Admin => StatusCode::UNAUTHORIZED,
            };
            assert_eq!(
                answer.status(),
                expected,
                "{} {}: {:?}",
                route.method,
                route.path,
                answer.body()
            );
        }

        // Nothing else is.
        let answer = warp::test::request()
            .path("/v1/devices/d1/nothing")
            .reply(&routes)
            .await;
        assert_eq!(
            refusal(&answer),
            (StatusCode::NOT_FOUND, "NOT_FOUND".to_owned())
        );
        let answer = warp::test::request()
            .method("PATCH")
            .path("/v1/devices/d1")
            .reply(&routes)
            .await;
        assert_eq!(
            refusal(&answer),
            (StatusCode::METHOD_NOT_ALLOWED, "UNIMPLEMENTED".to_owned())
        );
        assert_eq!(answer.headers()[ALLOW], "PUT, DELETE");

        // A declared length over the limit is refused before the body is read.
        let answer = warp::test::request()
            .method("POST")
            .path("/v1/apply")
            .body([b' '; 65])
            .reply(&routes)
            .await;
        assert_eq!(
            refusal(&answer),
            (
                StatusCode::PAYLOAD_TOO_LARGE,
                "RESOURCE_EXHAUSTED".to_owned()
            )
        );

        running.shutdown().await;
    }

    #[test]
    fn parameters_merge_into_the_body_and_must_agree_with_it() {
        let routes = compiled();
        let put = routes
            .iter()
            .find(|c| c.route.path == "/v1/projects/{project}/workloads/{name}" && c.route.body)
            .unwrap();
        let params = [("project", "shop".to_owned()), ("name", "web".to_owned())];
        let message = put
            .message(br#"{"tags": ["tier=web"]}"#, &params, &[])
            .unwrap();
        assert_eq!(
            message,
            serde_json::json!({"project": "shop", "name": "web", "tags": ["tier=web"]})
        );
        let e = put.message(br#"{"name": "db"}"#, &params, &[]).unwrap_err();
        assert!(
            e.message.contains("`name` is `web` in the path"),
            "{}",
            e.message
        );
        let encoded = [("project", "sh%6Fp".to_owned()), ("name", "web".to_owned())];
        let message = put.message(b"", &encoded, &[]).unwrap();
        assert_eq!(message["project"], "shop", "path parameters are decoded");

        let objects = routes
            .iter()
            .find(|c| c.route.path == "/v1/objects")
            .unwrap();
        let query = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
                .collect()
        };
        let message = objects
            .message(
                b"",
                &[],
                &query(&[("scope", "project/shop"), ("drafts", "true"), ("kind", "")]),
            )
            .unwrap();
        assert_eq!(
            message,
            serde_json::json!({"scope": "project/shop", "drafts": true})
        );
        for (pairs, expected) in [
            (&[("drafts", "yes")][..], "expected true or false"),
            (&[("colour", "red")], "unknown query parameter `colour`"),
            (&[("name", "a"), ("name", "b")], "given twice"),
        ] {
            let e = objects.message(b"", &[], &query(pairs)).unwrap_err();
            assert!(e.message.contains(expected), "{pairs:?}: {}", e.message);
        }
    }
}
