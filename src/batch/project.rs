//! Research-project batches (DESIGN §4, CSpeNS): the same requests as
//! `/v1/cstatns`, answered to the submitter **without codes** (`index,status`),
//! while the `index,cspens` table goes to the project's matching body only.
//!
//! Chunks are answered by [`super::process_chunk`] as for a CStatNS batch;
//! [`split_answer`] then cuts each answer line in two. The lines it reads
//! are the service's own (a clean index or nothing, 64 hex digits or
//! nothing, a status word: no quoting, no escaping), so it needs no parser.

use super::Format;

/// The header of the matching body's table (always CSV with `,`).
pub const MATCHER_HEADER: &[u8] = b"index,cspens\n";

/// The submitter's response header line, if the format has one.
pub fn response_header(format: Format) -> Option<Vec<u8>> {
    match format {
        Format::Csv { delimiter } => {
            let d = delimiter as char;
            Some(format!("index{d}status\n").into_bytes())
        }
        Format::Ndjson => None,
    }
}

/// Cuts a chunk's answer (lines of `index,cstatns,status`, CSV or NDJSON
/// as [`super::process_chunk`] writes them) into the submitter's lines
/// (`index,status`, same format) and, for each `ok` line, the matching
/// body's `index,cspens` line (CSV). A line that is not of that shape (which
/// the service never writes) goes to the submitter as `malformed_line`,
/// and nothing of it to the matching body.
pub fn split_answer(format: Format, answer: &[u8], client: &mut Vec<u8>, matcher: &mut Vec<u8>) {
    for line in answer.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        let fields = match format {
            Format::Csv { delimiter } => csv_fields(line, delimiter),
            Format::Ndjson => ndjson_fields(line),
        };
        let (index, code, status) = fields.unwrap_or((b"", b"", b"malformed_line"));
        match format {
            Format::Csv { delimiter } => {
                client.extend_from_slice(index);
                client.push(delimiter);
                client.extend_from_slice(status);
            }
            Format::Ndjson => {
                client.extend_from_slice(b"{\"index\":\"");
                client.extend_from_slice(index);
                client.extend_from_slice(b"\",\"status\":\"");
                client.extend_from_slice(status);
                client.extend_from_slice(b"\"}");
            }
        }
        client.push(b'\n');
        if status == b"ok" && !code.is_empty() {
            matcher.extend_from_slice(index);
            matcher.push(b',');
            matcher.extend_from_slice(code);
            matcher.push(b'\n');
        }
    }
}

type Fields<'a> = (&'a [u8], &'a [u8], &'a [u8]);

fn csv_fields(line: &[u8], d: u8) -> Option<Fields<'_>> {
    let mut it = line.splitn(3, |&b| b == d);
    let (index, code, status) = (it.next()?, it.next()?, it.next()?);
    (!status.contains(&d)).then_some((index, code, status))
}

fn ndjson_fields(line: &[u8]) -> Option<Fields<'_>> {
    let rest = line.strip_prefix(b"{\"index\":\"")?;
    let (index, rest) = split_at(rest, b"\",\"cstatns\":\"")?;
    let (code, rest) = split_at(rest, b"\",\"status\":\"")?;
    let status = rest.strip_suffix(b"\"}")?;
    Some((index, code, status))
}

fn split_at<'a>(s: &'a [u8], sep: &[u8]) -> Option<(&'a [u8], &'a [u8])> {
    let i = s.windows(sep.len()).position(|w| w == sep)?;
    Some((&s[..i], &s[i + sep.len()..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CODE: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

    #[test]
    fn codes_go_to_the_matching_body_and_statuses_to_the_submitter() {
        let answer = format!("A1;{CODE};ok\n;;malformed_line\nA3;;invalid_key\n");
        let (mut client, mut matcher) = (Vec::new(), Vec::new());
        split_answer(
            Format::Csv { delimiter: b';' },
            answer.as_bytes(),
            &mut client,
            &mut matcher,
        );
        assert_eq!(client, b"A1;ok\n;malformed_line\nA3;invalid_key\n");
        assert_eq!(matcher, format!("A1,{CODE}\n").as_bytes());
        assert!(!String::from_utf8(client).unwrap().contains(CODE));
    }

    #[test]
    fn ndjson_lines_are_cut_the_same_way() {
        let answer = format!(
            "{{\"index\":\"A1\",\"cstatns\":\"{CODE}\",\"status\":\"ok\"}}\n\
             {{\"index\":\"\",\"cstatns\":\"\",\"status\":\"malformed_line\"}}\n"
        );
        let (mut client, mut matcher) = (Vec::new(), Vec::new());
        split_answer(Format::Ndjson, answer.as_bytes(), &mut client, &mut matcher);
        assert_eq!(
            client,
            b"{\"index\":\"A1\",\"status\":\"ok\"}\n{\"index\":\"\",\"status\":\"malformed_line\"}\n"
        );
        assert_eq!(matcher, format!("A1,{CODE}\n").as_bytes());
    }
}
