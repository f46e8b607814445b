//! The JSON messages of the sync protocol (`research/convex-protocol.md` §3.2, §3.3), exactly as
//! they travel: one JSON object per text frame, discriminated by `type`.
//!
//! Values inside messages are already Convex JSON (`value::Value::to_json`); converting to and
//! from [`value::Value`] happens in the session, so these types stay plain wire shapes.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value as Json;

use crate::Ts;

/// A client-chosen query number, unique among the socket's current queries.
pub type QueryId = u32;
/// Version of the socket's query set, set by the client in `ModifyQuerySet.newVersion`.
pub type QuerySetVersion = u32;
/// Version of the socket's identity, bumped by the server on every accepted `Authenticate`.
pub type IdentityVersion = u32;
/// A client-chosen request number, shared by mutations and actions.
pub type RequestId = u32;

/// A timestamp as the sync protocol writes it: base64 of its 8 little-endian bytes
/// (0 → `"AAAAAAAAAAA="`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WireTs(pub Ts);

impl WireTs {
    pub fn encode(self) -> String {
        STANDARD.encode(self.0.to_le_bytes())
    }

    pub fn decode(text: &str) -> Result<WireTs, String> {
        let bytes = STANDARD
            .decode(text)
            .map_err(|e| format!("timestamp {text:?} is not base64: {e}"))?;
        let bytes: [u8; 8] = bytes
            .try_into()
            .map_err(|b: Vec<u8>| format!("timestamp must be 8 bytes, not {}", b.len()))?;
        Ok(WireTs(u64::from_le_bytes(bytes)))
    }
}

impl Serialize for WireTs {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.encode())
    }
}

impl<'de> Deserialize<'de> for WireTs {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        WireTs::decode(&text).map_err(serde::de::Error::custom)
    }
}

// ---- Client → server ----

/// A message from the client.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all_fields = "camelCase")]
pub enum ClientMessage {
    /// First message on every socket. No reply.
    Connect {
        session_id: String,
        #[serde(default)]
        connection_count: u32,
        #[serde(default)]
        last_close_reason: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max_observed_timestamp: Option<WireTs>,
        /// npm: its clock in ms; Rust: 0.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client_ts: Option<f64>,
    },
    ModifyQuerySet {
        base_version: QuerySetVersion,
        new_version: QuerySetVersion,
        modifications: Vec<QuerySetModification>,
    },
    Mutation {
        request_id: RequestId,
        udf_path: String,
        /// `[argsObject]` (every official client) or the object itself.
        args: Json,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        component_path: Option<String>,
    },
    Action {
        request_id: RequestId,
        udf_path: String,
        args: Json,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        component_path: Option<String>,
    },
    Authenticate(Authenticate),
    /// Client telemetry; ignored.
    Event {
        #[serde(default)]
        event_type: Option<String>,
        #[serde(default)]
        event: Json,
    },
}

/// One change in a `ModifyQuerySet`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all_fields = "camelCase")]
pub enum QuerySetModification {
    Add {
        query_id: QueryId,
        udf_path: String,
        args: Json,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        journal: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        component_path: Option<String>,
    },
    Remove {
        query_id: QueryId,
    },
}

/// `Authenticate`, discriminated by `tokenType`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "tokenType")]
pub enum Authenticate {
    User {
        value: String,
        #[serde(rename = "baseVersion")]
        base_version: IdentityVersion,
    },
    Admin {
        value: String,
        #[serde(rename = "baseVersion")]
        base_version: IdentityVersion,
        /// The user the admin acts as; npm names it `impersonating`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        impersonating: Option<Json>,
        /// The same, as the Rust client names it.
        #[serde(
            default,
            rename = "acting_as",
            alias = "actingAs",
            skip_serializing_if = "Option::is_none"
        )]
        acting_as: Option<Json>,
    },
    None {
        #[serde(rename = "baseVersion")]
        base_version: IdentityVersion,
    },
}

impl Authenticate {
    pub fn base_version(&self) -> IdentityVersion {
        match self {
            Authenticate::User { base_version, .. }
            | Authenticate::Admin { base_version, .. }
            | Authenticate::None { base_version } => *base_version,
        }
    }
}

// ---- Server → client ----

/// Where the client's view stands: its query set, its identity and the snapshot timestamp.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StateVersion {
    pub query_set: QuerySetVersion,
    pub identity: IdentityVersion,
    pub ts: WireTs,
}

/// One query's change inside a `Transition`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all_fields = "camelCase")]
pub enum StateModification {
    QueryUpdated {
        query_id: QueryId,
        value: Json,
        log_lines: Vec<String>,
        journal: Option<String>,
    },
    QueryFailed {
        query_id: QueryId,
        error_message: String,
        log_lines: Vec<String>,
        journal: Option<String>,
        /// The `ConvexError`'s data; absent for every other error.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error_data: Option<Json>,
    },
    QueryRemoved {
        query_id: QueryId,
    },
}

/// A message from the server. `TransitionChunk` is deliberately absent: the Rust client treats
/// it as a protocol error, and npm does not need it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all_fields = "camelCase")]
pub enum ServerMessage {
    Transition {
        start_version: StateVersion,
        end_version: StateVersion,
        modifications: Vec<StateModification>,
    },
    /// `result` is the value on success and the error message on failure; `ts` (the commit
    /// timestamp) is present exactly on success.
    MutationResponse {
        request_id: RequestId,
        success: bool,
        result: Json,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ts: Option<WireTs>,
        log_lines: Vec<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error_data: Option<Json>,
    },
    ActionResponse {
        request_id: RequestId,
        success: bool,
        result: Json,
        log_lines: Vec<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error_data: Option<Json>,
    },
    AuthError {
        error: String,
        base_version: IdentityVersion,
        auth_update_attempted: bool,
    },
    FatalError {
        error: String,
    },
    Ping,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn parse(json: Json) -> ClientMessage {
        match serde_json::from_value(json.clone()) {
            Ok(message) => message,
            Err(e) => panic!("{json} does not parse: {e}"),
        }
    }

    fn to_json(message: &ServerMessage) -> Json {
        match serde_json::to_value(message) {
            Ok(json) => json,
            Err(e) => panic!("{message:?} does not serialize: {e}"),
        }
    }

    #[test]
    fn timestamps_are_base64_of_little_endian_bytes() {
        assert_eq!(WireTs(0).encode(), "AAAAAAAAAAA=");
        assert_eq!(WireTs(1_700_000_000_000_000_000).encode(), "AAAqNv6clxc=");
        assert_eq!(
            WireTs::decode("AAAqNv6clxc="),
            Ok(WireTs(1_700_000_000_000_000_000))
        );
        assert!(
            WireTs::decode("AQID").is_err(),
            "3 bytes is not a timestamp"
        );
        assert!(WireTs::decode("not base64!").is_err());
    }

    #[test]
    fn connect_from_npm_and_rust() {
        assert_eq!(
            parse(
                json!({"type":"Connect","sessionId":"5f3c…","connectionCount":0,
                "lastCloseReason":"InitialConnect","maxObservedTimestamp":"AAAqNv6clxc=",
                "clientTs":1700000000000_i64})
            ),
            ClientMessage::Connect {
                session_id: "5f3c…".into(),
                connection_count: 0,
                last_close_reason: Some("InitialConnect".into()),
                max_observed_timestamp: Some(WireTs(1_700_000_000_000_000_000)),
                client_ts: Some(1.7e12),
            }
        );
        assert_eq!(
            parse(json!({"type":"Connect","sessionId":"s","connectionCount":3,
                "lastCloseReason":null,"clientTs":0})),
            ClientMessage::Connect {
                session_id: "s".into(),
                connection_count: 3,
                last_close_reason: None,
                max_observed_timestamp: None,
                client_ts: Some(0.0),
            }
        );
    }

    #[test]
    fn modify_query_set() {
        assert_eq!(
            parse(
                json!({"type":"ModifyQuerySet","baseVersion":0,"newVersion":1,"modifications":[
                {"type":"Add","queryId":0,"udfPath":"messages:list","args":[{}],"journal":null},
                {"type":"Add","queryId":1,"udfPath":"messages.js:list","args":[{"n":1.0}],
                 "componentPath":""},
                {"type":"Remove","queryId":7}]})
            ),
            ClientMessage::ModifyQuerySet {
                base_version: 0,
                new_version: 1,
                modifications: vec![
                    QuerySetModification::Add {
                        query_id: 0,
                        udf_path: "messages:list".into(),
                        args: json!([{}]),
                        journal: None,
                        component_path: None,
                    },
                    QuerySetModification::Add {
                        query_id: 1,
                        udf_path: "messages.js:list".into(),
                        args: json!([{"n":1.0}]),
                        journal: None,
                        component_path: Some(String::new()),
                    },
                    QuerySetModification::Remove { query_id: 7 },
                ],
            }
        );
    }

    #[test]
    fn mutation_and_action() {
        assert_eq!(
            parse(json!({"type":"Mutation","requestId":4,"udfPath":"m:send","args":[{"a":1.0}]})),
            ClientMessage::Mutation {
                request_id: 4,
                udf_path: "m:send".into(),
                args: json!([{"a":1.0}]),
                component_path: None,
            }
        );
        assert_eq!(
            parse(
                json!({"type":"Action","requestId":5,"udfPath":"a:go","args":[{}],
                "componentPath":"child"})
            ),
            ClientMessage::Action {
                request_id: 5,
                udf_path: "a:go".into(),
                args: json!([{}]),
                component_path: Some("child".into()),
            }
        );
    }

    #[test]
    fn authenticate_all_token_types() {
        assert_eq!(
            parse(json!({"type":"Authenticate","tokenType":"User","value":"jwt","baseVersion":0})),
            ClientMessage::Authenticate(Authenticate::User {
                value: "jwt".into(),
                base_version: 0
            })
        );
        let acting = json!({"tokenIdentifier":"iss|sub","issuer":"iss","subject":"sub"});
        assert_eq!(
            parse(
                json!({"type":"Authenticate","tokenType":"Admin","value":"key","baseVersion":2,
                "impersonating":acting})
            ),
            ClientMessage::Authenticate(Authenticate::Admin {
                value: "key".into(),
                base_version: 2,
                impersonating: Some(acting.clone()),
                acting_as: None,
            })
        );
        assert_eq!(
            parse(
                json!({"type":"Authenticate","tokenType":"Admin","value":"key","baseVersion":2,
                "acting_as":acting})
            ),
            ClientMessage::Authenticate(Authenticate::Admin {
                value: "key".into(),
                base_version: 2,
                impersonating: None,
                acting_as: Some(acting),
            })
        );
        assert_eq!(
            parse(json!({"type":"Authenticate","tokenType":"None","baseVersion":1})),
            ClientMessage::Authenticate(Authenticate::None { base_version: 1 })
        );
    }

    #[test]
    fn event_is_accepted() {
        assert_eq!(
            parse(json!({"type":"Event","eventType":"ClientConnect","event":{"x":1}})),
            ClientMessage::Event {
                event_type: Some("ClientConnect".into()),
                event: json!({"x":1}),
            }
        );
    }

    #[test]
    fn unknown_or_malformed_messages_are_refused() {
        for bad in [
            json!({"type":"Subscribe"}),
            json!({"type":"Mutation","udfPath":"m:f","args":[{}]}),
            json!({"type":"Authenticate","tokenType":"Bearer","value":"x","baseVersion":0}),
            json!({"type":"ModifyQuerySet","baseVersion":0,"newVersion":1,
                "modifications":[{"type":"Replace","queryId":1}]}),
            json!({"type":"Connect","sessionId":"s","maxObservedTimestamp":"AQID"}),
        ] {
            assert!(
                serde_json::from_value::<ClientMessage>(bad.clone()).is_err(),
                "{bad} parsed"
            );
        }
    }

    #[test]
    fn transition_shape() {
        let message = ServerMessage::Transition {
            start_version: StateVersion::default(),
            end_version: StateVersion {
                query_set: 1,
                identity: 0,
                ts: WireTs(1_700_000_000_000_000_000),
            },
            modifications: vec![
                StateModification::QueryUpdated {
                    query_id: 0,
                    value: json!({"$integer":"AQAAAAAAAAA="}),
                    log_lines: vec!["[LOG] hi".into()],
                    journal: None,
                },
                StateModification::QueryFailed {
                    query_id: 1,
                    error_message: "Uncaught Error: no".into(),
                    log_lines: vec![],
                    journal: None,
                    error_data: None,
                },
                StateModification::QueryFailed {
                    query_id: 2,
                    error_message: "ConvexError".into(),
                    log_lines: vec![],
                    journal: None,
                    error_data: Some(Json::Null),
                },
                StateModification::QueryRemoved { query_id: 3 },
            ],
        };
        assert_eq!(
            to_json(&message),
            json!({"type":"Transition",
                "startVersion":{"querySet":0,"identity":0,"ts":"AAAAAAAAAAA="},
                "endVersion":{"querySet":1,"identity":0,"ts":"AAAqNv6clxc="},
                "modifications":[
                    {"type":"QueryUpdated","queryId":0,"value":{"$integer":"AQAAAAAAAAA="},
                     "logLines":["[LOG] hi"],"journal":null},
                    {"type":"QueryFailed","queryId":1,"errorMessage":"Uncaught Error: no",
                     "logLines":[],"journal":null},
                    {"type":"QueryFailed","queryId":2,"errorMessage":"ConvexError",
                     "logLines":[],"journal":null,"errorData":null},
                    {"type":"QueryRemoved","queryId":3}]})
        );
    }

    #[test]
    fn responses_shape() {
        assert_eq!(
            to_json(&ServerMessage::MutationResponse {
                request_id: 4,
                success: true,
                result: json!(null),
                ts: Some(WireTs(1_700_000_000_000_000_000)),
                log_lines: vec![],
                error_data: None,
            }),
            json!({"type":"MutationResponse","requestId":4,"success":true,"result":null,
                "ts":"AAAqNv6clxc=","logLines":[]})
        );
        assert_eq!(
            to_json(&ServerMessage::MutationResponse {
                request_id: 4,
                success: false,
                result: json!("Uncaught ConvexError: nope"),
                ts: None,
                log_lines: vec!["[ERROR] x".into()],
                error_data: Some(json!({"code":"E"})),
            }),
            json!({"type":"MutationResponse","requestId":4,"success":false,
                "result":"Uncaught ConvexError: nope","logLines":["[ERROR] x"],
                "errorData":{"code":"E"}})
        );
        assert_eq!(
            to_json(&ServerMessage::ActionResponse {
                request_id: 5,
                success: true,
                result: json!(2.5),
                log_lines: vec![],
                error_data: None,
            }),
            json!({"type":"ActionResponse","requestId":5,"success":true,"result":2.5,
                "logLines":[]})
        );
        assert_eq!(
            to_json(&ServerMessage::AuthError {
                error: "bad token".into(),
                base_version: 0,
                auth_update_attempted: true,
            }),
            json!({"type":"AuthError","error":"bad token","baseVersion":0,
                "authUpdateAttempted":true})
        );
        assert_eq!(
            to_json(&ServerMessage::FatalError { error: "x".into() }),
            json!({"type":"FatalError","error":"x"})
        );
        assert_eq!(to_json(&ServerMessage::Ping), json!({"type":"Ping"}));
    }

    #[test]
    fn integral_floats_keep_their_decimal_point() {
        let text = serde_json::to_string(&ServerMessage::ActionResponse {
            request_id: 0,
            success: true,
            result: value::Value::Float64(5.0).to_json(),
            log_lines: vec![],
            error_data: None,
        });
        assert!(matches!(text, Ok(t) if t.contains("\"result\":5.0")));
    }
}
