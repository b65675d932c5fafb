//! Meetings: the signaling protocol, each room's state (sans-IO) and the hub that connects
//! rooms to WebSockets. The WebSocket handler itself is in `http::signaling`.

pub mod budget;
pub mod hub;
pub mod protocol;
pub mod room;

pub use hub::Hub;
