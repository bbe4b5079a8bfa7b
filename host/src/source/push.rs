//! Pushing one reference update with the receive-pack protocol (v0), which gix 0.90 has no
//! client for. gix's transports connect to `git-receive-pack` as they connect to
//! `git-upload-pack` for a fetch (a spawned `git` for file:// and ssh://, GET and POST for
//! http(s), a TCP daemon for git://), and its handshake reads the advertised refs and asks
//! for credentials on a 401; the command, the pack and the report are written and read here.

use super::auth::{Login, credentials_fn};
use gix::ObjectId;
use gix::protocol::transport::client::blocking_io::{ExtendedBufRead, Transport};
use gix::protocol::transport::client::{MessageKind, TransportWithoutIO, WriteMode};
use std::io::Write;

/// One whole object for a pack: its kind and its canonical bytes (without the loose header).
pub(super) struct PackObject {
    pub(super) kind: gix::object::Kind,
    pub(super) data: Vec<u8>,
}

/// The update of one reference: `old` is what the pusher last saw (`None`: absent).
pub(super) struct RefUpdate<'a> {
    pub(super) name: &'a str,
    pub(super) old: Option<ObjectId>,
    pub(super) new: ObjectId,
}

/// Why a push did not update the reference.
pub(super) enum PushError {
    /// The remote advertised the reference at another id than `old`: someone else moved it.
    /// Nothing was sent.
    Moved,
    /// The remote refused the update: its `ng <ref> <reason>` (a hook, a protected ref, a
    /// reference that moved after the advertisement) or `unpack <error>`.
    Rejected(String),
    /// Connecting, authenticating or exchanging failed; the caller classifies it.
    Failed(gix::Error),
}

impl From<std::io::Error> for PushError {
    fn from(e: std::io::Error) -> Self {
        PushError::Failed(gix::Error::from_error(e))
    }
}

fn failed(e: impl std::error::Error + Send + Sync + 'static) -> PushError {
    PushError::Failed(gix::Error::from_error(e))
}

fn protocol(what: String) -> PushError {
    failed(std::io::Error::new(std::io::ErrorKind::InvalidData, what))
}

/// Pushes `update` with the whole `objects` (every object the remote may lack) to `url`,
/// connecting with `repo`'s transport settings (ssh command, http timeouts, proxy) and
/// answering a credential request with `login` only.
///
/// # Errors
/// [`PushError::Moved`] when the remote's reference is not at `update.old` (nothing sent),
/// [`PushError::Rejected`] with the remote's reason, [`PushError::Failed`] otherwise.
pub(super) fn push(
    repo: &gix::Repository,
    url: &str,
    login: Option<Login>,
    update: &RefUpdate<'_>,
    objects: &[PackObject],
) -> Result<(), PushError> {
    use gix::protocol::transport::client::blocking_io::connect;
    let remote = repo.remote_at(url).map_err(PushError::Failed)?;
    let (url, _) = remote
        .sanitized_url_and_version(gix::remote::Direction::Push)
        .map_err(PushError::Failed)?;
    let ssh = if url.scheme == gix::url::Scheme::Ssh {
        repo.ssh_connect_options().map_err(PushError::Failed)?
    } else {
        Default::default()
    };
    // receive-pack speaks v0 only (git falls back to it when v2 is asked for).
    let options = connect::Options {
        version: gix::protocol::transport::Protocol::V1,
        ssh,
        trace: false,
    };
    let mut transport = connect::connect(url.clone(), options).map_err(PushError::Failed)?;
    let shown = url.to_bstring();
    if let Some(config) = repo
        .transport_options(gix::bstr::BStr::new(&shown), None)
        .map_err(PushError::Failed)?
    {
        transport.configure(&*config).map_err(PushError::Failed)?;
    }
    let handshake = gix::protocol::handshake(
        &mut transport,
        gix::protocol::transport::Service::ReceivePack,
        credentials_fn(login),
        Vec::new(),
        &mut gix::progress::Discard,
    )
    .map_err(PushError::Failed)?;
    let advertised = handshake.refs.iter().flatten().find_map(|r| match r.unpack() {
        (name, Some(id), _) if name == update.name => Some(id.to_owned()),
        _ => None,
    });
    if advertised != update.old {
        return Err(PushError::Moved);
    }
    if !handshake.capabilities.contains("report-status") {
        return Err(protocol(
            "the remote does not offer report-status, so a push could not be confirmed".into(),
        ));
    }
    let pack = pack(objects)?;
    let request = transport
        .request(WriteMode::Binary, MessageKind::Flush, false)
        .map_err(failed)?;
    // Raw parts: the command is one pkt-line and a flush, the pack follows unframed.
    let (mut writer, mut reader) = request.into_parts();
    let zero = ObjectId::null(gix::hash::Kind::Sha1);
    let command = format!(
        "{} {} {}\0report-status agent=kitsync/{}",
        update.old.unwrap_or(zero),
        update.new,
        update.name,
        env!("CARGO_PKG_VERSION")
    );
    writer.write_all(format!("{:04x}", command.len() + 4).as_bytes())?;
    writer.write_all(command.as_bytes())?;
    writer.write_all(b"0000")?;
    writer.write_all(&pack)?;
    writer.flush()?;
    // Over http the request body ends here; the response is read after.
    drop(writer);
    read_report(&mut *reader, update.name)
}

/// Reads report-status: `unpack ok`, then `ok <ref>` or `ng <ref> <reason>`, then a flush.
fn read_report(reader: &mut (dyn ExtendedBufRead<'_> + Unpin + '_), name: &str) -> Result<(), PushError> {
    let mut unpack: Option<String> = None;
    let mut status: Option<Result<(), String>> = None;
    while let Some(line) = reader.readline() {
        let line = line?.map_err(PushError::Failed)?;
        let Some(bytes) = line.as_slice() else { break };
        let text = String::from_utf8_lossy(bytes);
        let text = text.trim_end();
        if let Some(rest) = text.strip_prefix("unpack ") {
            unpack = Some(rest.to_owned());
        } else if text.strip_prefix("ok ") == Some(name) {
            status = Some(Ok(()));
        } else if let Some(reason) = text
            .strip_prefix("ng ")
            .and_then(|rest| rest.strip_prefix(name))
            .and_then(|rest| rest.strip_prefix(' '))
        {
            status = Some(Err(reason.to_owned()));
        }
    }
    match (unpack.as_deref(), status) {
        (Some("ok"), Some(Ok(()))) => Ok(()),
        (Some(error), _) if error != "ok" => Err(PushError::Rejected(format!("unpack failed: {error}"))),
        (_, Some(Err(reason))) => Err(PushError::Rejected(reason)),
        _ => Err(protocol(format!("the remote sent no status for {name}"))),
    }
}

/// A version 2 pack of `objects`, each whole (no deltas): the `PACK` header, then per object
/// its type and size (a varint) and its zlib-compressed bytes, then the SHA-1 of all that.
///
/// # Errors
/// Compression failed, or more than 2^32 objects.
pub(super) fn pack(objects: &[PackObject]) -> std::io::Result<Vec<u8>> {
    use gix::object::Kind;
    let count = u32::try_from(objects.len()).map_err(std::io::Error::other)?;
    let mut out = Vec::with_capacity(12 + objects.iter().map(|o| o.data.len() + 16).sum::<usize>() + 20);
    out.extend_from_slice(b"PACK");
    out.extend_from_slice(&2u32.to_be_bytes());
    out.extend_from_slice(&count.to_be_bytes());
    for object in objects {
        let type_id: u8 = match object.kind {
            Kind::Commit => 1,
            Kind::Tree => 2,
            Kind::Blob => 3,
            Kind::Tag => 4,
        };
        object_header(&mut out, type_id, object.data.len());
        let mut deflate = gix::zlib::stream::deflate::Write::new(&mut out, gix::zlib::Compression::DEFAULT);
        deflate.write_all(&object.data)?;
        // Ends the zlib stream.
        deflate.flush()?;
    }
    let mut hasher = gix::hash::hasher(gix::hash::Kind::Sha1);
    hasher.update(&out);
    let checksum = hasher.try_finalize().map_err(std::io::Error::other)?;
    out.extend_from_slice(checksum.as_bytes());
    Ok(out)
}

/// An object's pack header: the type in bits 4-6 of the first byte with the size's low 4
/// bits, then 7 bits of size per byte; the high bit says another byte follows.
fn object_header(out: &mut Vec<u8>, type_id: u8, size: usize) {
    let mut byte = (type_id << 4) | (size & 0x0f) as u8;
    let mut rest = size >> 4;
    while rest > 0 {
        out.push(byte | 0x80);
        byte = (rest & 0x7f) as u8;
        rest >>= 7;
    }
    out.push(byte);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_headers_carry_type_and_size() {
        let header = |type_id, size| {
            let mut out = Vec::new();
            object_header(&mut out, type_id, size);
            out
        };
        assert_eq!(header(3, 0), [0x30]);
        assert_eq!(header(3, 15), [0x3f]);
        // 16 = 0b1_0000: low nibble 0, then 1.
        assert_eq!(header(1, 16), [0x90, 0x01]);
        // 300 = 0b1_0010_1100: nibble 0b1100, then 0b1_0010 = 18.
        assert_eq!(header(2, 300), [0xac, 0x12]);
    }

    #[test]
    fn a_pack_has_header_count_and_checksum() {
        let objects = [PackObject {
            kind: gix::object::Kind::Blob,
            data: b"hello\n".to_vec(),
        }];
        let bytes = pack(&objects).expect("pack");
        assert_eq!(&bytes[..4], b"PACK");
        assert_eq!(bytes[4..8], 2u32.to_be_bytes());
        assert_eq!(bytes[8..12], 1u32.to_be_bytes());
        assert_eq!(bytes[12], 0x36, "blob of 6 bytes");
        let (body, checksum) = bytes.split_at(bytes.len() - 20);
        let mut hasher = gix::hash::hasher(gix::hash::Kind::Sha1);
        hasher.update(body);
        assert_eq!(hasher.try_finalize().expect("sha1").as_bytes(), checksum);
    }
}
