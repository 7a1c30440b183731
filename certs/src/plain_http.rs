//! What both TLS front ends (the edge and a core's direct HTTPS connector) answer when a client
//! sends plain HTTP to a TLS port: a readable HTTP 400 instead of TLS alert bytes, which clients
//! would report as `malformed HTTP response "\x15\x03\x03..."`.

/// The first byte of every TLS connection: a handshake record.
pub const TLS_HANDSHAKE: u8 = 0x16;

/// The answer to plain HTTP on a TLS port; the connection is closed after it.
pub const PLAIN_HTTP_REFUSAL: &[u8] = b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nConnection: close\r\nContent-Length: 74\r\n\r\nThis port speaks HTTPS: the request was sent in plain HTTP. Use https://.\n";

/// Whether a connection whose first byte is `first` is plain text rather than TLS.
pub fn is_plain(first: u8) -> bool {
    first != TLS_HANDSHAKE
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_refusal_is_well_formed() {
        let text = std::str::from_utf8(super::PLAIN_HTTP_REFUSAL).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(body.len(), len);
    }
}
