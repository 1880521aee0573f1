//! HTTP by hand over a TCP stream, for tests of what a server does with slow, stalled or
//! oversized clients that an HTTP client library would not let a test be.

use std::time::Duration;

use serde_json::Value;
use tokio::{io::AsyncReadExt as _, net::TcpStream};

/// Reads an answer to the end of the connection, within `deadline`: status and JSON body
/// (Null when the body is not JSON).
pub async fn read_answer(stream: &mut TcpStream, deadline: Duration) -> anyhow::Result<(u16, Value)> {
    let mut answer = Vec::new();
    tokio::time::timeout(deadline, stream.read_to_end(&mut answer)).await??;
    parse(&answer)
}

/// An HTTP answer's status and JSON body (Null when the body is not JSON).
pub fn parse(answer: &[u8]) -> anyhow::Result<(u16, Value)> {
    let text = String::from_utf8_lossy(answer);
    let status = text.split(' ').nth(1).and_then(|s| s.parse().ok()).ok_or_else(|| anyhow::anyhow!("no HTTP answer: {text:?}"))?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or_default();
    Ok((status, serde_json::from_str(body).unwrap_or(Value::Null)))
}

/// Whether the server closed `stream` (end of file or reset) within `deadline`, having sent
/// nothing.
pub async fn closed_by_server(stream: &mut TcpStream, deadline: Duration) -> bool {
    let mut buf = [0u8; 256];
    matches!(tokio::time::timeout(deadline, stream.read(&mut buf)).await, Ok(Ok(0) | Err(_)))
}
