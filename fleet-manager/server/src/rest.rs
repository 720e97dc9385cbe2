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
//! The REST port speaks the same TLS as gRPC, never plaintext: a user's client certificate
//! authenticates as it does over gRPC (the connection's [`ConnInfo`] goes into every request's
//! extensions), and every header is passed on as gRPC metadata, so `Authorization: Bearer
//! <token>` works too. HTTP/1.1 and HTTP/2 are both served (ALPN, else the connection's
//! preface decides).
//!
//! A refusal is `{"code": "NOT_FOUND", "message": "…"}`: `code` is the gRPC status code's
//! name and the HTTP status follows from it by [`http_status`]. FAILED_PRECONDITION (nothing
//! to commit, no intent to explain from) is 409 Conflict rather than 412: HTTP keeps 412 for
//! failed conditional headers (`If-Match`), which this API has none of, while 409 says the
//! resource's state is in the way; ABORTED (a stale `expectedRevision`) is 409 too, and
//! `code` tells them apart. The REST layer adds its own: 400 INVALID_ARGUMENT for malformed
//! JSON or parameters, 404 NOT_FOUND for an unknown path, 405 UNIMPLEMENTED for a method the
//! path does not take, 413 RESOURCE_EXHAUSTED for a body over the limit (16 MiB, as gRPC).
//!
//! `GET /v1/watch` is a stream of Server-Sent Events: each event's `data` is one `Event` in
//! proto3 JSON; a comment line every 15 s keeps idle connections open; if the watcher falls
//! behind, an `error` event carrying a refusal ends the stream. `GET /healthz` and
//! `GET /openapi.json` (the OpenAPI 3.1 document of every route, made from [`ROUTES`] and the
//! proto descriptors) need no credentials.

mod openapi;

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt as _, Full, LengthLimitError, Limited, StreamBody};
use hyper::body::{Bytes, Frame, Incoming};
use hyper::header::{ALLOW, CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE, HeaderValue};
use hyper::service::service_fn;
use hyper::{HeaderMap, Method, Request, Response, StatusCode};
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
use tracing::{Instrument as _, debug, info_span, warn};

use crate::orchestrator::OrchestratorService;
use crate::service::Core;

/// How long a client has for its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long open connections get to finish at shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// How often an idle event stream gets a comment line, so proxies keep it open.
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

type Reply = Pin<Box<dyn Future<Output = Result<Response<Body>, ApiError>> + Send>>;
type Body = UnsyncBoxBody<Bytes, Infallible>;

/// How a route answers.
#[derive(Clone, Copy)]
struct Handler {
    /// The `Orchestrator` trait method it calls, checked against the route's RPC.
    method: &'static str,
    call: fn(Arc<Api>, Call) -> Reply,
}

fn reply(f: impl Future<Output = Result<Response<Body>, ApiError>> + Send + 'static) -> Reply {
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

    fn body(&self) -> Value {
        serde_json::json!({"code": code_name(self.code), "message": self.message})
    }

    fn into_response(self) -> Response<Body> {
        let mut response = bytes_response(
            self.status,
            "application/json",
            Bytes::from(self.body().to_string()),
        );
        if let Some(allow) = self.allow.and_then(|a| HeaderValue::from_str(&a).ok()) {
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

fn bytes_response(status: StatusCode, content_type: &'static str, body: Bytes) -> Response<Body> {
    let mut response = Response::new(Full::new(body).boxed_unsync());
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

fn json_response(message: &impl Serialize) -> Result<Response<Body>, ApiError> {
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

enum Segment {
    Literal(&'static str),
    Param(&'static str),
}

/// The field a `{field}` segment of a route's path names.
fn param_of(segment: &'static str) -> Option<&'static str> {
    segment.strip_prefix('{')?.strip_suffix('}')
}

/// The `{field}` parameters of a route's path, in order.
fn path_params(path: &'static str) -> impl Iterator<Item = &'static str> {
    path.split('/').filter_map(param_of)
}

/// A route, ready to match requests.
struct Compiled {
    route: &'static Route,
    segments: Vec<Segment>,
    params: HashMap<&'static str, Param>,
    /// The request message's name.
    input: String,
}

impl Compiled {
    /// Checks the route against the proto: its RPC exists and its handler calls it, and each
    /// parameter names a field a parameter can carry. A mistake in [`ROUTES`] is a bug, so it
    /// panics (a unit test builds the router).
    fn new(route: &'static Route, protos: &openapi::Protos) -> Compiled {
        let segments = route
            .path
            .split('/')
            .skip(1)
            .map(|s| match param_of(s) {
                Some(p) => Segment::Param(p),
                None => Segment::Literal(s),
            })
            .collect();
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
            segments,
            params,
            input,
        }
    }

    /// The path parameters, if `path` (split and decoded) is this route's.
    fn matches<'a>(&self, path: &'a [String]) -> Option<Vec<(&'static str, &'a str)>> {
        if path.len() != self.segments.len() {
            return None;
        }
        let mut params = Vec::new();
        for (segment, text) in self.segments.iter().zip(path) {
            match segment {
                Segment::Literal(l) if l == text => {}
                Segment::Param(p) => params.push((*p, text.as_str())),
                Segment::Literal(_) => return None,
            }
        }
        Some(params)
    }

    /// The request message: the body with the parameters merged in.
    fn message(
        &self,
        body: &[u8],
        path: &[(&'static str, &str)],
        query: Option<&str>,
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
            let value = self.params[name].value(name, text)?;
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
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (name, text) = pair.split_once('=').unwrap_or((pair, ""));
            let (name, text) = (decode_query(name)?, decode_query(text)?);
            let Some(name) = self.route.query.iter().copied().find(|q| *q == name) else {
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
                object.insert(name.into(), self.params[name].value(name, &text)?);
            }
        }
        Ok(Value::Object(object))
    }
}

fn decode_query(text: &str) -> Result<String, ApiError> {
    let text = text.replace('+', " ");
    percent_decode_str(&text)
        .decode_utf8()
        .map(|t| t.into_owned())
        .map_err(|_| ApiError::bad_request("the query is not UTF-8 once decoded"))
}

/// What every request shares.
struct Api {
    service: OrchestratorService,
    routes: Vec<Compiled>,
    openapi: Bytes,
    max_body: usize,
    shutdown: watch::Receiver<bool>,
}

impl Api {
    fn new(core: Arc<Core>, max_body: usize, shutdown: watch::Receiver<bool>) -> Api {
        let protos = openapi::Protos::load();
        let routes = ROUTES.iter().map(|r| Compiled::new(r, &protos)).collect();
        let openapi = serde_json::to_vec_pretty(&openapi::document(&protos, ROUTES))
            .expect("a JSON value encodes");
        Api {
            service: OrchestratorService::new(core),
            routes,
            openapi: Bytes::from(openapi),
            max_body,
            shutdown,
        }
    }

    async fn handle(self: Arc<Self>, request: Request<Incoming>) -> Response<Body> {
        let response = match self.dispatch(request).await {
            Ok(response) => response,
            Err(e) => e.into_response(),
        };
        debug!(status = response.status().as_u16(), "answered");
        response
    }

    async fn dispatch(
        self: Arc<Self>,
        request: Request<Incoming>,
    ) -> Result<Response<Body>, ApiError> {
        let path = request.uri().path();
        let segments = path
            .split('/')
            .skip(1)
            .map(|s| percent_decode_str(s).decode_utf8().map(|s| s.into_owned()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| ApiError::bad_request("the path is not UTF-8 once decoded"))?;
        let mut allowed = Vec::new();
        let mut found = None;
        for compiled in &self.routes {
            if let Some(params) = compiled.matches(&segments) {
                if compiled.route.method == request.method() {
                    found = Some((compiled, params));
                    break;
                }
                allowed.push(compiled.route.method.as_str());
            }
        }
        let Some((compiled, params)) = found else {
            if allowed.is_empty() {
                return Err(ApiError::new(
                    StatusCode::NOT_FOUND,
                    Code::NotFound,
                    format!("no route {path}; GET /openapi.json lists them"),
                ));
            }
            let allow = allowed.join(", ");
            let mut e = ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                Code::Unimplemented,
                format!("{path} takes {allow}, not {}", request.method()),
            );
            e.allow = Some(allow);
            return Err(e);
        };
        let route = compiled.route;
        let (parts, body) = request.into_parts();
        let body = if route.body {
            read_body(&parts.headers, body, self.max_body).await?
        } else {
            Bytes::new()
        };
        let message = compiled.message(&body, &params, parts.uri.query())?;
        let call = Call {
            message,
            body,
            input: compiled.input.clone(),
            headers: parts.headers,
            conn: parts.extensions.get::<ConnInfo>().cloned(),
        };
        (route.handler.call)(self, call).await
    }
}

async fn read_body(headers: &HeaderMap, body: Incoming, max: usize) -> Result<Bytes, ApiError> {
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            Code::ResourceExhausted,
            format!("the body is over the limit of {max} bytes"),
        )
    };
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return Err(too_large());
    }
    match Limited::new(body, max).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<LengthLimitError>() => Err(too_large()),
        Err(e) => Err(ApiError::bad_request(format!("reading the body: {e}"))),
    }
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
type Frames = mpsc::Sender<Result<Frame<Bytes>, Infallible>>;

fn watch_events(api: Arc<Api>, call: Call) -> Reply {
    reply(async move {
        let events = api.service.watch(call.request()?).await?.into_inner();
        let (tx, rx) = mpsc::channel(16);
        tokio::spawn(send_events(events, tx, api.shutdown.clone()));
        let mut response = Response::new(StreamBody::new(ReceiverStream::new(rx)).boxed_unsync());
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        Ok(response)
    })
}

/// Writes events as Server-Sent Events until the client leaves, the watch ends or the server
/// stops.
async fn send_events(mut events: EventStream, tx: Frames, mut shutdown: watch::Receiver<bool>) {
    let mut keepalive = tokio::time::interval(SSE_KEEPALIVE);
    keepalive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first tick is at once: a comment that tells the client the watch is on.
    loop {
        let (text, last) = tokio::select! {
            event = events.next() => match event {
                Some(Ok(event)) => match serde_json::to_string(&event) {
                    Ok(json) => (format!("data: {json}\n\n"), false),
                    Err(e) => {
                        warn!("could not encode an event: {e}");
                        continue;
                    }
                },
                Some(Err(status)) => {
                    (format!("event: error\ndata: {}\n\n", ApiError::from(status).body()), true)
                }
                None => return,
            },
            _ = keepalive.tick() => (": watching\n\n".to_owned(), false),
            () = tx.closed() => return,
            () = stopped(&mut shutdown) => return,
        };
        if tx.send(Ok(Frame::data(Bytes::from(text)))).await.is_err() || last {
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
    let api = Arc::new(Api::new(core, max_body, shutdown.clone()));
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
            Arc::clone(&api),
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
    api: Arc<Api>,
    builder: Arc<auto::Builder<TokioExecutor>>,
    conn: TlsConn,
    mut shutdown: watch::Receiver<bool>,
) {
    let info = conn.info().clone();
    let peer = info.remote_addr;
    let service = service_fn(move |mut request: Request<Incoming>| {
        let span =
            info_span!("rest", method = %request.method(), path = %request.uri().path(), ?peer);
        request.extensions_mut().insert(info.clone());
        let api = Arc::clone(&api);
        async move { Ok::<_, Infallible>(api.handle(request).await) }.instrument(span)
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

    fn router() -> Vec<Compiled> {
        let protos = openapi::Protos::load();
        ROUTES.iter().map(|r| Compiled::new(r, &protos)).collect()
    }

    #[test]
    fn every_rpc_has_one_route_and_parameters_take_their_field_types() {
        // Building the router checks each route against the proto.
        let routes = router();
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

    #[test]
    fn no_two_routes_match_the_same_request() {
        let routes = router();
        for (i, a) in routes.iter().enumerate() {
            let sample: Vec<String> = a
                .segments
                .iter()
                .map(|s| match s {
                    Segment::Literal(l) => (*l).to_owned(),
                    Segment::Param(p) => format!("x{p}"),
                })
                .collect();
            for b in &routes[i + 1..] {
                assert!(
                    a.route.method != b.route.method || b.matches(&sample).is_none(),
                    "{} {} and {}",
                    a.route.method,
                    a.route.path,
                    b.route.path
                );
            }
        }
    }

    #[test]
    fn parameters_merge_into_the_body_and_must_agree_with_it() {
        let routes = router();
        let put = routes
            .iter()
            .find(|c| c.route.path == "/v1/projects/{project}/workloads/{name}" && c.route.body)
            .unwrap();
        let params = [("project", "shop"), ("name", "web")];
        let message = put
            .message(br#"{"tags": ["tier=web"]}"#, &params, None)
            .unwrap();
        assert_eq!(
            message,
            serde_json::json!({"project": "shop", "name": "web", "tags": ["tier=web"]})
        );
        let e = put
            .message(br#"{"name": "db"}"#, &params, None)
            .unwrap_err();
        assert!(
            e.message.contains("`name` is `web` in the path"),
            "{}",
            e.message
        );

        let objects = routes
            .iter()
            .find(|c| c.route.path == "/v1/objects")
            .unwrap();
        let message = objects
            .message(b"", &[], Some("scope=project%2Fshop&drafts=true&kind="))
            .unwrap();
        assert_eq!(
            message,
            serde_json::json!({"scope": "project/shop", "drafts": true})
        );
        for (query, expected) in [
            ("drafts=yes", "expected true or false"),
            ("colour=red", "unknown query parameter `colour`"),
            ("name=a&name=b", "given twice"),
        ] {
            let e = objects.message(b"", &[], Some(query)).unwrap_err();
            assert!(e.message.contains(expected), "{query}: {}", e.message);
        }
    }
}
