//! How a login phase ends before login: past the pre-auth deadline, or on an HTTP request
//! (a cross-protocol attack, see `proto::http`).

use std::net::SocketAddr;
use std::time::Duration;

use bytes::BytesMut;
use tracing::warn;

use super::stream::ClientStream;
use super::{close, send, Outcome, Report};
use crate::proto::{LoginPhase, Protocol};
use crate::runtime::Runtime;

/// Ends a login phase that ran past the pre-auth deadline, with the protocol's reply.
pub(super) async fn timed_out<P: LoginPhase>(
    client: &mut ClientStream,
    phase: &P,
    report: &mut Report,
) {
    let _ = send(
        client,
        &phase.timeout_reply(),
        Duration::from_secs(1),
        report,
    )
    .await;
    report.outcome = Outcome::Timeout;
}

/// Ends a session that sent HTTP (see `proto::http`): whatever else the client sent is
/// dropped unread, since a web page controls it (the request body may be pipelined
/// commands); then one reply, the close, a warning naming the client, and the count.
pub(super) async fn refuse_cross_protocol(
    rt: &Runtime,
    client: &mut ClientStream,
    buf: &mut BytesMut,
    peer: SocketAddr,
    protocol: Protocol,
    reply: &[u8],
    report: &mut Report,
) {
    crate::secrets::wipe(&mut buf[..]);
    buf.clear();
    warn!(
        client = %peer,
        %protocol,
        "HTTP request on a mail port refused and the connection closed: a web page may be \
         driving a browser against this gateway (cross-protocol attack)"
    );
    rt.metrics.cross_protocol(protocol);
    report.outcome = Outcome::CrossProtocol;
    let _ = send(client, reply, rt.config.limits.pre_auth_timeout, report).await;
    close(client).await;
}
