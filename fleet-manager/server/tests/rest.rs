//! The REST API against a real server on loopback: the OpenAPI document matches the routes
//! and the proto, every route checks credentials and roles as gRPC does, policy and inventory
//! written over REST become commits, refusals carry the documented HTTP status and a message
//! that says what was wrong, the watch streams Server-Sent Events, and nothing is served in
//! plaintext.

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt as _, Full, StreamBody};
use hyper::body::{Bytes, Frame, Incoming};
use hyper::client::conn::{http1, http2};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use palisade_pki::{Role, Validity};
use palisade_server::fleet::FleetConfig;
use palisade_server::rest::{Access, Operation, ROUTES, code_name, http_status};
use palisade_server::serve::{self, Running, ServeConfig};
use rustls_pki_types::ServerName;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tonic::Code;

/// How long any one exchange may take before the test fails rather than hangs.
const PATIENCE: Duration = Duration::from_secs(5);

struct Server {
    running: Running,
    ca_pem: String,
    admin_token: String,
    _data: tempfile::TempDir,
}

async fn start() -> Server {
    let data = tempfile::tempdir().unwrap();
    let running = serve::start(ServeConfig {
        snmp: None,
        telemetry: Default::default(),
        data: data.path().to_path_buf(),
        grpc_listen: "127.0.0.1:0".parse().unwrap(),
        http_listen: Some("127.0.0.1:0".parse().unwrap()),
        hosts: Vec::new(),
        server_cert_validity: palisade_server::serve::SERVER_CERT_VALIDITY,
        fleet: FleetConfig::default(),
    })
    .await
    .unwrap();
    let ca_pem = std::fs::read_to_string(&running.ca_file).unwrap();
    let admin_token = std::fs::read_to_string(&running.admin_token_file)
        .unwrap()
        .trim()
        .to_owned();
    Server {
        running,
        ca_pem,
        admin_token,
        _data: data,
    }
}

impl Server {
    async fn tls(&self, alpn: &[u8], identity: Option<(&str, &str)>) -> TlsStream<TcpStream> {
        let mut config = (*palisade_pki::client_config(&self.ca_pem, identity).unwrap()).clone();
        config.alpn_protocols = vec![alpn.to_vec()];
        let tcp = TcpStream::connect(self.running.http_addr.unwrap())
            .await
            .unwrap();
        TlsConnector::from(Arc::new(config))
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .unwrap()
    }

    /// An HTTP/2 client sending `token`, if any.
    async fn client(&self, token: Option<&str>) -> Client {
        let io = TokioIo::new(self.tls(b"h2", None).await);
        let (sender, connection) = http2::handshake(TokioExecutor::new(), io).await.unwrap();
        tokio::spawn(connection);
        Client {
            sender: Sender::Two(sender),
            token: token.map(str::to_owned),
        }
    }

    /// An HTTP/1.1 client presenting a user certificate issued by the fleet CA.
    async fn client_with_certificate(&self, name: &str, role: Role) -> Client {
        let issued = self
            .running
            .core
            .ca
            .issue_user(
                name,
                role,
                Validity::for_duration(Duration::from_secs(3600)),
            )
            .unwrap();
        let identity = (issued.cert.pem.as_str(), issued.key_pem.as_str());
        let io = TokioIo::new(self.tls(b"http/1.1", Some(identity)).await);
        let (sender, connection) = http1::handshake(io).await.unwrap();
        tokio::spawn(connection);
        Client {
            sender: Sender::One(sender),
            token: None,
        }
    }

    async fn admin(&self) -> Client {
        self.client(Some(&self.admin_token)).await
    }
}

enum Sender {
    One(http1::SendRequest<Full<Bytes>>),
    Two(http2::SendRequest<Full<Bytes>>),
}

struct Client {
    sender: Sender,
    token: Option<String>,
}

/// A reply read whole.
#[derive(Debug)]
struct Answer {
    status: StatusCode,
    headers: hyper::HeaderMap,
    json: Value,
}

impl Answer {
    /// Asserts a refusal with this status and gRPC code, and returns its message.
    #[track_caller]
    fn refused(&self, status: StatusCode, code: &str) -> &str {
        assert_eq!(
            (self.status, self.json["code"].as_str()),
            (status, Some(code)),
            "{self:?}"
        );
        self.json["message"].as_str().unwrap()
    }

    #[track_caller]
    fn ok(&self) -> &Value {
        assert_eq!(self.status, StatusCode::OK, "{self:?}");
        &self.json
    }
}

impl Client {
    async fn send(&mut self, method: &str, path: &str, body: Vec<u8>) -> Response<Incoming> {
        let uri = match self.sender {
            Sender::One(_) => path.to_owned(),
            Sender::Two(_) => format!("https://localhost{path}"),
        };
        let mut request = Request::builder()
            .method(method)
            .uri(uri)
            .header("host", "localhost");
        if let Some(token) = &self.token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let request = request.body(Full::new(Bytes::from(body))).unwrap();
        let sent = async {
            match &mut self.sender {
                Sender::One(s) => {
                    s.ready().await.unwrap();
                    s.send_request(request).await
                }
                Sender::Two(s) => s.send_request(request).await,
            }
        };
        tokio::time::timeout(PATIENCE, sent)
            .await
            .expect("the server answers in time")
            .unwrap()
    }

    async fn call(&mut self, method: &str, path: &str, body: Option<Value>) -> Answer {
        let body = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
        self.call_raw(method, path, body).await
    }

    async fn call_raw(&mut self, method: &str, path: &str, body: Vec<u8>) -> Answer {
        let response = self.send(method, path, body).await;
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = tokio::time::timeout(PATIENCE, response.into_body().collect())
            .await
            .expect("the body arrives in time")
            .unwrap()
            .to_bytes();
        let json = serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            panic!(
                "{method} {path}: {status} with a body that is not JSON ({e}): {}",
                String::from_utf8_lossy(&bytes)
            )
        });
        Answer {
            status,
            headers,
            json,
        }
    }
}

/// A request path for a route, with each `{param}` filled in.
fn sample_path(path: &str) -> String {
    path.split('/')
        .map(|segment| match segment {
            "{name}" => "nothing",
            "{project}" => "nowhere",
            "{kind}" => "policy",
            "{generation}" => "1",
            s => s,
        })
        .collect::<Vec<_>>()
        .join("/")
}

fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/three-tier")
}

fn policy_documents(files: &[&str]) -> Value {
    let documents: Vec<Value> = files
        .iter()
        .map(|f| {
            let content = std::fs::read_to_string(example().join("policies").join(f)).unwrap();
            json!({"name": f, "content": content})
        })
        .collect();
    json!({ "documents": documents })
}

#[tokio::test]
async fn the_openapi_document_describes_every_route_and_every_rpc() {
    let server = start().await;
    let mut anonymous = server.client(None).await;
    let doc = anonymous
        .call("GET", "/openapi.json", None)
        .await
        .ok()
        .clone();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));

    // Every route is documented and served, and nothing else is.
    let mut documented = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            documented += 1;
            assert!(
                ROUTES
                    .iter()
                    .any(|r| r.path == path && r.method.as_str().eq_ignore_ascii_case(method)),
                "{method} {path} is documented but not in the table"
            );
            let method = method.to_ascii_uppercase();
            let status = anonymous
                .call(&method, &sample_path(path), None)
                .await
                .status;
            assert!(
                ![StatusCode::NOT_FOUND, StatusCode::METHOD_NOT_ALLOWED].contains(&status),
                "{method} {path} is documented but not served: {status}"
            );
        }
    }
    assert_eq!(documented, ROUTES.len());
    anonymous
        .call("GET", "/v1/undocumented", None)
        .await
        .refused(StatusCode::NOT_FOUND, "NOT_FOUND");
    for route in ROUTES {
        let op = &doc["paths"][route.path][route.method.as_str().to_ascii_lowercase()];
        assert_eq!(op["operationId"], route.operation.name(), "{}", route.path);
        for param in route.path.split('/').filter(|s| s.starts_with('{')) {
            let name = param.trim_matches(['{', '}']);
            assert!(
                op["parameters"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|p| p["name"] == name && p["in"] == "path" && p["required"] == true),
                "{} documents its path parameter {name}",
                route.path
            );
        }
        for name in route.query {
            assert!(
                op["parameters"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|p| p["name"] == *name && p["in"] == "query"),
                "{} documents its query parameter {name}",
                route.path
            );
        }
        assert_eq!(op["requestBody"].is_object(), route.body, "{}", route.path);
        assert_eq!(
            op["security"] == json!([]),
            route.access == Access::Public,
            "{}",
            route.path
        );
        assert_eq!(
            op["responses"]["403"].is_object(),
            route.access == Access::Admin,
            "{}",
            route.path
        );
    }

    // Every RPC of the proto has its route, read from the proto's text.
    let proto = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../lib/api/proto/palisade/orchestrator/v1/orchestrator.proto"),
    )
    .unwrap();
    let rpcs: Vec<&str> = proto
        .lines()
        .filter_map(|l| l.trim().strip_prefix("rpc "))
        .map(|l| l.split('(').next().unwrap().trim())
        .collect();
    let routed = ROUTES
        .iter()
        .filter(|r| matches!(r.operation, Operation::Rpc(_)))
        .count();
    assert_eq!(routed, rpcs.len(), "no route calls an RPC the proto lacks");
    for rpc in rpcs {
        let operations: Vec<&str> = ROUTES
            .iter()
            .filter(|r| matches!(r.operation, Operation::Rpc(name) if name == rpc))
            .map(|r| r.path)
            .collect();
        assert_eq!(operations.len(), 1, "{rpc} has one route: {operations:?}");
    }

    // Every reference resolves, and schemas use the proto3 JSON names.
    let text = doc.to_string();
    for reference in text.split("\"$ref\":\"#/").skip(1) {
        let pointer = format!("/{}", reference.split('"').next().unwrap());
        assert!(doc.pointer(&pointer).is_some(), "{pointer} resolves");
    }
    let schemas = &doc["components"]["schemas"];
    assert!(schemas["CommitStatus"]["properties"]["committedAtUnixMs"].is_object());
    assert!(schemas["ExplainRequest"]["properties"]["srcPort"].is_object());
    assert_eq!(schemas["Device"]["properties"]["labels"]["type"], "object");
    assert_eq!(
        schemas["Inventory"]["properties"]["devices"]["items"]["$ref"],
        "#/components/schemas/Device"
    );
    assert_eq!(
        schemas["CommitState"]["enum"][2], "COMMIT_STATE_ENFORCED",
        "enums by name"
    );
    let schemes = &doc["components"]["securitySchemes"];
    assert_eq!(schemes["bearerToken"]["scheme"], "bearer");
    assert_eq!(schemes["clientCertificate"]["type"], "mutualTLS");
    let watch = &doc["paths"]["/v1/watch"]["get"]["responses"]["200"]["content"];
    assert!(watch["text/event-stream"].is_object());

    drop(anonymous);
    server.running.shutdown().await;
}

#[tokio::test]
async fn every_route_checks_credentials_and_roles_like_grpc() {
    let server = start().await;
    let mut admin = server.admin().await;
    let token = admin
        .call(
            "POST",
            "/v1/api-tokens",
            Some(json!({"name": "viewer", "role": "read-only"})),
        )
        .await;
    assert_eq!(token.ok()["name"], "viewer");
    let token = token.json["token"].as_str().unwrap().to_owned();
    let mut anonymous = server.client(None).await;
    let mut forged = server.client(Some("not-a-token")).await;
    let mut viewer = server.client(Some(&token)).await;

    for route in ROUTES {
        let method = route.method.as_str();
        let path = sample_path(route.path);
        let body = route.body.then(|| json!({}));
        if route.access == Access::Public {
            anonymous.call(method, &path, None).await.ok();
            continue;
        }
        let message = anonymous
            .call(method, &path, body.clone())
            .await
            .refused(StatusCode::UNAUTHORIZED, "UNAUTHENTICATED")
            .to_owned();
        assert!(message.contains("Bearer"), "{path}: {message}");
        forged
            .call(method, &path, body.clone())
            .await
            .refused(StatusCode::UNAUTHORIZED, "UNAUTHENTICATED");
        if route.operation == Operation::Rpc("Watch") {
            let response = viewer.send(method, &path, Vec::new()).await;
            assert_eq!(response.status(), StatusCode::OK);
            assert_eq!(response.headers()["content-type"], "text/event-stream");
            continue;
        }
        let answer = viewer.call(method, &path, body).await;
        if route.access == Access::Admin {
            let message = answer.refused(StatusCode::FORBIDDEN, "PERMISSION_DENIED");
            assert!(message.contains("`viewer` is read-only"), "{message}");
        } else {
            assert!(
                ![StatusCode::UNAUTHORIZED, StatusCode::FORBIDDEN].contains(&answer.status),
                "{method} {path}: {answer:?}"
            );
        }
    }
    // A read succeeds for the read-only user; the write it was refused left nothing behind.
    let inventory = viewer.call("GET", "/v1/inventory", None).await;
    assert_eq!(inventory.ok(), &json!({}));

    drop((admin, anonymous, forged, viewer));
    server.running.shutdown().await;
}

#[tokio::test]
async fn policy_and_inventory_written_over_rest_become_commits() {
    let server = start().await;
    let mut admin = server.admin().await;

    // Tags first: the inventory refers to them.
    let applied = admin
        .call(
            "POST",
            "/v1/apply",
            Some(policy_documents(&["tags.pal", "admin.pal", "shop.pal"])),
        )
        .await;
    let applied = applied.ok();
    assert!(
        applied["changes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["kind"] == "FirewallPolicy"
                && c["name"] == "three-tier"
                && c["change"] == "created"),
        "{applied}"
    );
    assert_eq!(applied["commits"].as_array().unwrap().len(), 1);

    let inventory: Value =
        serde_saphyr::from_str(&std::fs::read_to_string(example().join("inventory.yaml")).unwrap())
            .unwrap();
    for device in inventory["devices"].as_array().unwrap() {
        let path = format!("/v1/devices/{}", device["name"].as_str().unwrap());
        let change = admin.call("PUT", &path, Some(device.clone())).await;
        assert_eq!(change.ok()["commit"]["scope"], "inventory");
    }
    for project in inventory["projects"].as_array().unwrap() {
        let path = format!("/v1/projects/{}", project["name"].as_str().unwrap());
        admin.call("PUT", &path, Some(project.clone())).await.ok();
    }
    for workload in inventory["workloads"].as_array().unwrap() {
        let mut body = workload.clone();
        // The path names the workload; the body need not.
        let name = body.as_object_mut().unwrap().remove("name").unwrap();
        let path = format!(
            "/v1/projects/{}/workloads/{}",
            workload["project"].as_str().unwrap(),
            name.as_str().unwrap()
        );
        admin.call("PUT", &path, Some(body)).await.ok();
    }

    let commits = admin.call("GET", "/v1/commits?limit=50", None).await;
    let commits = commits.ok()["commits"].as_array().unwrap().clone();
    // One apply, two devices, one project, five workloads.
    assert_eq!(commits.len(), 9, "{commits:?}");
    let latest = &commits[0];
    assert_eq!(latest["scope"], "inventory");
    assert!(
        !latest["targets"].as_array().unwrap().is_empty(),
        "{latest}"
    );
    let generation = latest["generation"].as_str().unwrap();
    let one = admin
        .call("GET", &format!("/v1/commits/{generation}"), None)
        .await;
    assert_eq!(one.ok()["generation"], latest["generation"]);
    let limited = admin.call("GET", "/v1/commits?limit=2", None).await;
    assert_eq!(limited.ok()["commits"].as_array().unwrap().len(), 2);

    let objects = admin
        .call(
            "GET",
            "/v1/objects?kind=policy&scope=project/shop&format=pal",
            None,
        )
        .await;
    let objects = objects.ok()["objects"].as_array().unwrap().clone();
    assert_eq!(objects.len(), 1);
    assert!(
        objects[0]["content"]
            .as_str()
            .unwrap()
            .contains("three-tier")
    );

    let explain = |to: &str| json!({"from": "shop/web-prod", "to": to, "port": 8080});
    let allowed = admin
        .call("POST", "/v1/explain", Some(explain("shop/app-prod")))
        .await;
    assert_eq!(allowed.ok()["allowed"], true, "{:?}", allowed.json);
    let denied = admin
        .call("POST", "/v1/explain", Some(explain("shop/app-dev")))
        .await;
    assert_eq!(denied.ok().get("allowed"), None, "false is left out");

    let devices = admin.call("GET", "/v1/devices", None).await;
    let names: Vec<&Value> = devices.ok()["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| &d["name"])
        .collect();
    assert_eq!(names, [&json!("dpu-1"), &json!("dpu-2")]);

    admin
        .call("DELETE", "/v1/projects/shop/workloads/web-dev", None)
        .await
        .ok();
    let inventory = admin.call("GET", "/v1/inventory", None).await;
    assert_eq!(inventory.ok()["workloads"].as_array().unwrap().len(), 4);

    drop(admin);
    server.running.shutdown().await;
}

#[tokio::test]
async fn drafts_and_refusals_carry_the_documented_statuses() {
    let server = start().await;
    let mut admin = server.admin().await;
    admin
        .call("POST", "/v1/apply", Some(policy_documents(&["tags.pal"])))
        .await
        .ok();
    let drafting = admin
        .call(
            "PUT",
            "/v1/drafting",
            Some(json!({"scope": "project/shop", "enabled": true})),
        )
        .await;
    assert_eq!(drafting.ok()["drafted"], true);

    let extra =
        "project shop {\n  policy extra {\n    0010: allow tier=web > tier=db on tcp/22\n  }\n}\n";
    let applied = admin
        .call(
            "POST",
            "/v1/apply",
            Some(json!({"documents": [{"name": "extra.pal", "content": extra}]})),
        )
        .await;
    assert_eq!(applied.ok()["changes"][0]["drafted"], true);
    let diff = admin
        .call("GET", "/v1/diff?scope=project%2Fshop", None)
        .await;
    let diff = diff.ok().clone();
    assert_eq!(diff["entries"][0]["name"], "extra");
    assert_eq!(diff["entries"][0]["change"], "created");
    let revision: u64 = diff["revision"].as_str().unwrap().parse().unwrap();

    let stale = json!({"scope": "project/shop", "expectedRevision": (revision + 1).to_string()});
    admin
        .call("POST", "/v1/commit", Some(stale))
        .await
        .refused(StatusCode::CONFLICT, "ABORTED");
    admin
        .call("POST", "/v1/revert", Some(json!({"scope": "project/shop"})))
        .await
        .ok();
    admin
        .call("POST", "/v1/commit", Some(json!({"scope": "project/shop"})))
        .await
        .refused(StatusCode::CONFLICT, "FAILED_PRECONDITION");
    admin
        .call(
            "DELETE",
            "/v1/objects/FirewallPolicy/extra?scope=project/shop",
            None,
        )
        .await
        .refused(StatusCode::NOT_FOUND, "NOT_FOUND");
    admin
        .call("GET", "/v1/commits/99", None)
        .await
        .refused(StatusCode::NOT_FOUND, "NOT_FOUND");

    drop(admin);
    server.running.shutdown().await;
}

#[tokio::test]
async fn malformed_requests_are_refused_with_a_message_saying_what_is_wrong() {
    let server = start().await;
    let mut admin = server.admin().await;
    let cases: &[(&str, &str, &str, &str)] = &[
        (
            "PUT",
            "/v1/devices/d1",
            r#"{"name": "#,
            "the body is not valid JSON: EOF while parsing a value at line 1 column 9",
        ),
        (
            "PUT",
            "/v1/devices/d1",
            r#"{"nmae": "d1"}"#,
            "not a valid Device message: unknown field `nmae`",
        ),
        (
            "PUT",
            "/v1/drafting",
            r#"{"scope": "global", "enabled": "yes"}"#,
            "line 1 column",
        ),
        (
            "POST",
            "/v1/apply",
            "[1]",
            "the body must be a JSON object: the ApplyRequest message",
        ),
        (
            "PUT",
            "/v1/devices/d1",
            r#"{"name": "d2"}"#,
            "`name` is `d1` in the path",
        ),
        ("GET", "/v1/commits?limit=lots", "", "parameter `limit`"),
        ("GET", "/v1/commits/abc", "", "parameter `generation`"),
        (
            "GET",
            "/v1/diff?scope=project/shop&colour=red",
            "",
            "unknown query parameter `colour`: expected one of scope",
        ),
        (
            "POST",
            "/v1/apply",
            r#"{"documents": [{"name": "x.pal", "content": "policy {"}]}"#,
            "x.pal",
        ),
    ];
    for (method, path, body, expected) in cases {
        let answer = admin.call_raw(method, path, body.as_bytes().to_vec()).await;
        let message = answer.refused(StatusCode::BAD_REQUEST, "INVALID_ARGUMENT");
        assert!(message.contains(expected), "{method} {path}: {message}");
    }
    admin
        .call("GET", "/v1/nothing", None)
        .await
        .refused(StatusCode::NOT_FOUND, "NOT_FOUND");
    let patch = admin.call("PATCH", "/v1/devices/d1", None).await;
    patch.refused(StatusCode::METHOD_NOT_ALLOWED, "UNIMPLEMENTED");
    assert_eq!(patch.headers["allow"], "PUT, DELETE");

    drop(admin);
    server.running.shutdown().await;
}

#[tokio::test]
async fn a_body_over_16_mib_is_refused_with_413() {
    let server = start().await;
    let mut admin = server.admin().await;
    let body = vec![b' '; (16 << 20) + 1];
    admin
        .call_raw("POST", "/v1/apply", body)
        .await
        .refused(StatusCode::PAYLOAD_TOO_LARGE, "RESOURCE_EXHAUSTED");

    // A body of unstated length is counted as it arrives.
    let io = TokioIo::new(server.tls(b"h2", None).await);
    let (mut sender, connection) = http2::handshake(TokioExecutor::new(), io).await.unwrap();
    tokio::spawn(connection);
    let megabytes =
        (0..17).map(|_| Ok::<_, Infallible>(Frame::data(Bytes::from(vec![b' '; 1 << 20]))));
    let body = StreamBody::new(tokio_stream::iter(megabytes));
    let request = Request::post("https://localhost/v1/apply")
        .header("authorization", format!("Bearer {}", server.admin_token))
        .body(body)
        .unwrap();
    let response = tokio::time::timeout(PATIENCE, sender.send_request(request))
        .await
        .expect("the server answers in time")
        .unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    drop(admin);
    server.running.shutdown().await;
}

#[tokio::test]
async fn plaintext_http_is_refused() {
    let server = start().await;
    let mut tcp = TcpStream::connect(server.running.http_addr.unwrap())
        .await
        .unwrap();
    tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    // The server closes the connection: the read ends (cleanly or with a reset) in time.
    let _ = tokio::time::timeout(PATIENCE, tcp.read_to_end(&mut answer))
        .await
        .expect("the server closes a plaintext connection");
    assert!(
        !answer.starts_with(b"HTTP/"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    server.running.shutdown().await;
}

#[tokio::test]
async fn user_certificates_authenticate_over_http1_like_grpc() {
    let server = start().await;
    let mut alice = server
        .client_with_certificate("alice", Role::ReadOnly)
        .await;
    assert_eq!(
        alice.call("GET", "/healthz", None).await.ok()["status"],
        "SERVING"
    );
    alice.call("GET", "/v1/inventory", None).await.ok();
    let refused = alice.call("PUT", "/v1/devices/d1", Some(json!({}))).await;
    let message = refused.refused(StatusCode::FORBIDDEN, "PERMISSION_DENIED");
    assert!(message.contains("`alice` is read-only"), "{message}");

    let mut root = server.client_with_certificate("root", Role::Admin).await;
    let change = root.call("PUT", "/v1/devices/d1", Some(json!({}))).await;
    assert_eq!(change.ok()["commit"]["scope"], "inventory");
    let inventory = alice.call("GET", "/v1/inventory", None).await;
    assert_eq!(inventory.ok()["devices"][0]["name"], "d1");

    drop((alice, root));
    server.running.shutdown().await;
}

#[tokio::test]
async fn the_watch_streams_events_as_server_sent_events() {
    let server = start().await;
    let mut watcher = server.admin().await;
    let mut admin = server.admin().await;
    let response = watcher.send("GET", "/v1/watch", Vec::new()).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut body = response.into_body();

    let change = admin.call("PUT", "/v1/devices/d1", Some(json!({}))).await;
    let generation = change.ok()["commit"]["generation"].clone();

    let mut text = String::new();
    let event = tokio::time::timeout(PATIENCE, async {
        loop {
            // A field's value may start with one space, which is not part of it.
            if let Some(data) = text
                .split("\n\n")
                .find_map(|event| event.strip_prefix("data:"))
            {
                let data = data.strip_prefix(' ').unwrap_or(data);
                return serde_json::from_str::<Value>(data).unwrap();
            }
            let frame = body.frame().await.unwrap().unwrap();
            if let Ok(data) = frame.into_data() {
                text.push_str(std::str::from_utf8(&data).unwrap());
            }
        }
    })
    .await
    .expect("an event arrives in time");
    assert_eq!(event["commit"]["generation"], generation, "{event}");
    assert_eq!(event["commit"]["scope"], "inventory");
    assert!(
        text.starts_with(':'),
        "a comment opens the stream: {text:?}"
    );

    drop((body, watcher, admin));
    server.running.shutdown().await;
}

#[test]
fn status_codes_map_to_the_documented_http_statuses() {
    let expected = [
        (Code::Ok, 200, "OK"),
        (Code::Cancelled, 500, "CANCELLED"),
        (Code::Unknown, 500, "UNKNOWN"),
        (Code::InvalidArgument, 400, "INVALID_ARGUMENT"),
        (Code::DeadlineExceeded, 500, "DEADLINE_EXCEEDED"),
        (Code::NotFound, 404, "NOT_FOUND"),
        (Code::AlreadyExists, 409, "ALREADY_EXISTS"),
        (Code::PermissionDenied, 403, "PERMISSION_DENIED"),
        (Code::ResourceExhausted, 500, "RESOURCE_EXHAUSTED"),
        (Code::FailedPrecondition, 409, "FAILED_PRECONDITION"),
        (Code::Aborted, 409, "ABORTED"),
        (Code::OutOfRange, 500, "OUT_OF_RANGE"),
        (Code::Unimplemented, 500, "UNIMPLEMENTED"),
        (Code::Internal, 500, "INTERNAL"),
        (Code::Unavailable, 503, "UNAVAILABLE"),
        (Code::DataLoss, 500, "DATA_LOSS"),
        (Code::Unauthenticated, 401, "UNAUTHENTICATED"),
    ];
    for (code, status, name) in expected {
        assert_eq!(http_status(code).as_u16(), status, "{code:?}");
        assert_eq!(code_name(code), name);
    }
}
