//! The client protocol of Chorus: the Convex HTTP API (`http`), the WebSocket sync protocol
//! with reactive subscriptions (`sync`) and the deploy endpoints, written against the
//! [`Backend`] trait. `research/convex-protocol.md` §2, §3 and §5 are the specification.

mod backend;
pub mod http;
pub mod sync;

pub use backend::{
    ApiError, Backend, CallKind, CallRequest, DeployOp, ErrorCode, FunctionFailure, FunctionResult,
    FunctionSuccess, Identity, MutationRun, QueryRun, ReadToken, Ts,
};
