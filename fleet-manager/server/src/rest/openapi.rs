//! The OpenAPI document of the REST API, made at start-up from the route table and the proto
//! descriptors compiled into `palisade_api`: its paths are exactly the routes served, and its
//! schemas are the orchestrator's messages as proto3 JSON carries them, with the proto's
//! comments as descriptions. Nothing is written twice, so the document cannot drift from
//! the server or the proto.

use prost::Message as _;
use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{
    DescriptorProto, FieldDescriptorProto, FileDescriptorProto, FileDescriptorSet,
    MethodDescriptorProto,
};
use serde_json::{Map, Value, json};

use super::{Access, Operation, Route, code_name, http_status, path_params};

/// The orchestrator's proto package.
const PACKAGE: &str = "palisade.orchestrator.v1";
/// The orchestrator service in it.
const SERVICE: &str = "Orchestrator";

// Field numbers in descriptor.proto, which make up the paths of source locations.
const FILE_MESSAGE: i32 = 4;
const FILE_ENUM: i32 = 5;
const FILE_SERVICE: i32 = 6;
const MESSAGE_FIELD: i32 = 2;
const SERVICE_METHOD: i32 = 2;

/// The orchestrator's proto file, as compiled into `palisade_api`.
pub(super) struct Protos {
    file: FileDescriptorProto,
    /// The files it imports (flow records), whose types are named in full.
    imports: Vec<FileDescriptorProto>,
    service: usize,
}

impl Protos {
    /// Decodes the descriptors compiled into `palisade_api`.
    pub(super) fn load() -> Protos {
        let set = FileDescriptorSet::decode(palisade_api::FILE_DESCRIPTOR_SET)
            .expect("palisade_api's descriptor set decodes");
        let (mine, others): (Vec<_>, Vec<_>) =
            set.file.into_iter().partition(|f| f.package() == PACKAGE);
        let file = mine
            .into_iter()
            .next()
            .expect("palisade_api's descriptor set has the orchestrator package");
        let imports = others
            .into_iter()
            .filter(|f| file.dependency.iter().any(|d| d == f.name()))
            .collect();
        let service = file
            .service
            .iter()
            .position(|s| s.name() == SERVICE)
            .expect("the orchestrator package has the Orchestrator service");
        Protos {
            file,
            imports,
            service,
        }
    }

    /// The names of the service's RPCs.
    #[cfg(test)]
    pub(super) fn rpcs(&self) -> impl Iterator<Item = &str> {
        self.file.service[self.service]
            .method
            .iter()
            .map(|m| m.name())
    }

    /// The RPC called `name`, with its index in the service.
    pub(super) fn method(&self, name: &str) -> Option<(usize, &MethodDescriptorProto)> {
        self.file.service[self.service]
            .method
            .iter()
            .enumerate()
            .find(|(_, m)| m.name() == name)
    }

    /// The top-level message of the package named by a fully qualified type name
    /// (`.palisade.orchestrator.v1.Device`), with its index in the file.
    pub(super) fn message(&self, type_name: &str) -> Option<(usize, &DescriptorProto)> {
        let name = schema_name(type_name);
        self.file
            .message_type
            .iter()
            .enumerate()
            .find(|(_, m)| m.name() == name)
    }

    /// The leading comment at a source location of the orchestrator's file, on one line.
    fn comment(&self, path: &[i32]) -> Option<String> {
        comment_in(&self.file, path)
    }

    fn schemas(&self) -> Map<String, Value> {
        let mut out = Map::new();
        for file in std::iter::once(&self.file).chain(&self.imports) {
            // The orchestrator's own types by their short names; imported ones in full.
            let prefix = if file.package() == PACKAGE {
                String::new()
            } else {
                format!("{}.", file.package())
            };
            for (i, message) in file.message_type.iter().enumerate() {
                out.insert(
                    format!("{prefix}{}", message.name()),
                    message_schema(file, i, message),
                );
            }
            for (i, e) in file.enum_type.iter().enumerate() {
                let values: Vec<&str> = e.value.iter().map(|v| v.name()).collect();
                let schema = json!({"type": "string", "enum": values});
                out.insert(
                    format!("{prefix}{}", e.name()),
                    described(schema, comment_in(file, &[FILE_ENUM, i as i32])),
                );
            }
        }
        out
    }
}

/// The leading comment at a source location of `file`, on one line.
fn comment_in(file: &FileDescriptorProto, path: &[i32]) -> Option<String> {
    let location = file
        .source_code_info
        .as_ref()?
        .location
        .iter()
        .find(|l| l.path == path)?;
    let text = location
        .leading_comments()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    (!text.is_empty()).then_some(text)
}

fn message_schema(file: &FileDescriptorProto, index: usize, message: &DescriptorProto) -> Value {
    let mut properties = Map::new();
    for (j, field) in message.field.iter().enumerate() {
        let path = [FILE_MESSAGE, index as i32, MESSAGE_FIELD, j as i32];
        properties.insert(
            field.json_name().into(),
            described(field_schema(message, field), comment_in(file, &path)),
        );
    }
    let mut description: Vec<String> = comment_in(file, &[FILE_MESSAGE, index as i32])
        .into_iter()
        .collect();
    for (k, _) in message.oneof_decl.iter().enumerate() {
        // A proto3 `optional` field sits alone in a synthetic oneof; that is no choice.
        let members: Vec<String> = message
            .field
            .iter()
            .filter(|f| f.oneof_index == Some(k as i32) && !f.proto3_optional())
            .map(|f| format!("`{}`", f.json_name()))
            .collect();
        if !members.is_empty() {
            description.push(format!("At most one of {} is set.", members.join(", ")));
        }
    }
    let schema = json!({
        "type": "object",
        "properties": properties,
        "additionalProperties": false,
    });
    described(
        schema,
        (!description.is_empty()).then(|| description.join(" ")),
    )
}

/// A message's or enum's name within the package, which is also its schema's name.
fn schema_name(type_name: &str) -> &str {
    let name = type_name.trim_start_matches('.');
    name.strip_prefix(PACKAGE)
        .map_or(name, |n| n.trim_start_matches('.'))
}

fn schema_ref(type_name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{}", schema_name(type_name))})
}

fn described(mut schema: Value, description: Option<String>) -> Value {
    if let (Some(object), Some(d)) = (schema.as_object_mut(), description) {
        object.insert("description".into(), d.into());
    }
    schema
}

/// A field's schema: repeated fields are arrays, map fields objects.
pub(super) fn field_schema(owner: &DescriptorProto, field: &FieldDescriptorProto) -> Value {
    if field.label() != Label::Repeated {
        return scalar_schema(field);
    }
    let entry = owner.nested_type.iter().find(|n| {
        n.options.as_ref().is_some_and(|o| o.map_entry())
            && field.type_name().ends_with(&format!(".{}", n.name()))
    });
    match entry.and_then(|e| e.field.iter().find(|f| f.number() == 2)) {
        Some(value) => json!({"type": "object", "additionalProperties": scalar_schema(value)}),
        None => json!({"type": "array", "items": scalar_schema(field)}),
    }
}

/// The proto3 JSON form of one value of a field: 64-bit integers are decimal strings, bytes
/// base64, enums their value's name.
fn scalar_schema(field: &FieldDescriptorProto) -> Value {
    match field.r#type() {
        Type::Double | Type::Float => json!({"type": "number"}),
        Type::Int32 | Type::Sint32 | Type::Sfixed32 => {
            json!({"type": "integer", "format": "int32"})
        }
        Type::Uint32 | Type::Fixed32 => {
            json!({"type": "integer", "format": "int64", "minimum": 0, "maximum": u32::MAX})
        }
        Type::Int64 | Type::Sint64 | Type::Sfixed64 => {
            json!({"type": "string", "format": "int64", "pattern": "^-?[0-9]+$"})
        }
        Type::Uint64 | Type::Fixed64 => {
            json!({"type": "string", "format": "uint64", "pattern": "^[0-9]+$"})
        }
        Type::Bool => json!({"type": "boolean"}),
        Type::String => json!({"type": "string"}),
        Type::Bytes => json!({"type": "string", "format": "byte"}),
        Type::Enum | Type::Message | Type::Group => schema_ref(field.type_name()),
    }
}

const INTRODUCTION: &str = "The REST mirror of the Palisade orchestrator gRPC API \
(palisade.orchestrator.v1.Orchestrator): every operation calls the RPC named by its \
x-grpc-method, with the same validation and authorization. Bodies and replies are proto3 \
JSON: lowerCamelCase field names, 64-bit integers as decimal strings, bytes in base64, enums \
by name; fields at their default value are left out of replies. Path and query parameters \
fill the request message's field of the same name. Served over HTTPS only (the fleet CA \
signs the server certificate), HTTP/1.1 or HTTP/2. Errors are {\"code\", \"message\"} with \
the gRPC status code's name; the HTTP status follows from the code:";

/// The document.
pub(super) fn document(protos: &Protos, routes: &[Route]) -> Value {
    let mut paths = Map::new();
    for route in routes {
        let item = paths
            .entry(route.path)
            .or_insert_with(|| json!({}))
            .as_object_mut()
            .expect("path items are objects");
        item.insert(
            route.method.as_str().to_ascii_lowercase(),
            operation(protos, route),
        );
    }
    let mut mapping = Vec::new();
    for code in (0..=16).map(tonic::Code::from) {
        if code != tonic::Code::Ok {
            mapping.push(format!(
                "{} {}",
                code_name(code),
                http_status(code).as_u16()
            ));
        }
    }
    let mut schemas = protos.schemas();
    let codes: Vec<&str> = (1..=16).map(|c| code_name(tonic::Code::from(c))).collect();
    schemas.insert(
        "Error".into(),
        json!({
            "type": "object",
            "required": ["code", "message"],
            "properties": {
                "code": {"type": "string", "enum": codes, "description": "The gRPC status code's name."},
                "message": {"type": "string", "description": "What was wrong, for people."},
            },
        }),
    );
    schemas.insert(
        "Health".into(),
        json!({
            "type": "object",
            "required": ["status"],
            "properties": {"status": {"type": "string", "enum": ["SERVING"]}},
        }),
    );
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Palisade fleet manager",
            "version": "v1",
            "description": format!("{INTRODUCTION} {}.", mapping.join(", ")),
        },
        "security": [{"bearerToken": []}, {"clientCertificate": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearerToken": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "An API token: the first admin's is admin.token in the data directory; admins make more with POST /v1/api-tokens.",
                },
                "clientCertificate": {
                    "type": "mutualTLS",
                    "description": "An orchestrator user's certificate issued by the fleet CA (URI SAN urn:palisade:user:NAME:ROLE), presented in the TLS handshake.",
                },
            },
            "responses": {
                "Error": {
                    "description": "The request was refused.",
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
                },
            },
            "schemas": schemas,
        },
    })
}

fn operation(protos: &Protos, route: &Route) -> Value {
    let mut op = Map::new();
    op.insert("operationId".into(), route.operation.name().into());
    op.insert("summary".into(), route.summary.into());
    let mut responses = Map::new();
    match route.operation {
        Operation::Rpc(rpc) => {
            let (index, method) = protos
                .method(rpc)
                .expect("the router checked the table's RPCs");
            let (input_index, input) = protos
                .message(method.input_type())
                .expect("the router checked the table's RPCs");
            let access = match route.access {
                Access::Admin => "Admins only.",
                _ => "Any orchestrator user.",
            };
            let path = [
                FILE_SERVICE,
                protos.service as i32,
                SERVICE_METHOD,
                index as i32,
            ];
            let description = match protos.comment(&path) {
                Some(c) => format!("{c} {access}"),
                None => access.to_string(),
            };
            op.insert("description".into(), description.into());
            op.insert(
                "x-grpc-method".into(),
                format!("/{PACKAGE}.{SERVICE}/{rpc}").into(),
            );
            let mut parameters = Vec::new();
            let params = path_params(route.path)
                .map(|p| (p, "path"))
                .chain(route.query.iter().map(|q| (*q, "query")));
            for (name, place) in params {
                let (j, field) = input
                    .field
                    .iter()
                    .enumerate()
                    .find(|(_, f)| f.json_name() == name)
                    .expect("the router checked the table's parameters");
                let path = [FILE_MESSAGE, input_index as i32, MESSAGE_FIELD, j as i32];
                let parameter = json!({
                    "name": name,
                    "in": place,
                    "required": place == "path",
                    "schema": scalar_schema(field),
                });
                parameters.push(described(parameter, protos.comment(&path)));
            }
            if !parameters.is_empty() {
                op.insert("parameters".into(), parameters.into());
            }
            if route.body {
                let note = if path_params(route.path).next().is_some() {
                    "Fields given in the path may be left out; if given, they must match."
                } else {
                    "An empty body is the message with every field at its default."
                };
                op.insert(
                    "requestBody".into(),
                    json!({
                        "description": note,
                        "content": {"application/json": {"schema": schema_ref(method.input_type())}},
                    }),
                );
            }
            let reply = if method.server_streaming() {
                json!({
                    "description": format!(
                        "Server-Sent Events: each `data:` field is one {} in proto3 JSON; a comment line every 15 seconds keeps the stream alive; an `error` event (an Error) ends it.",
                        schema_name(method.output_type())
                    ),
                    "content": {"text/event-stream": {
                        "schema": {"type": "string"},
                        "x-event-data": schema_ref(method.output_type()),
                    }},
                })
            } else {
                json!({
                    "description": format!("The {}.", schema_name(method.output_type())),
                    "content": {"application/json": {"schema": schema_ref(method.output_type())}},
                })
            };
            responses.insert("200".into(), reply);
            responses.insert("400".into(), error_response());
        }
        Operation::Health => {
            responses.insert(
                "200".into(),
                json!({
                    "description": "The server is up.",
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Health"}}},
                }),
            );
        }
        Operation::OpenApi => {
            responses.insert(
                "200".into(),
                json!({
                    "description": "This document.",
                    "content": {"application/json": {"schema": {"type": "object"}}},
                }),
            );
        }
    }
    match route.access {
        Access::Public => {
            op.insert("security".into(), json!([]));
        }
        Access::Read => {
            responses.insert("401".into(), error_response());
        }
        Access::Admin => {
            responses.insert("401".into(), error_response());
            responses.insert("403".into(), error_response());
        }
    }
    responses.insert("default".into(), error_response());
    op.insert("responses".into(), responses.into());
    op.into()
}

fn error_response() -> Value {
    json!({"$ref": "#/components/responses/Error"})
}
