//! CSV as RFC 4180 writes it: a header row, CRLF line ends, and a field quoted when it holds a
//! comma, a quote or a line break (quotes doubled).

/// One CSV line of `fields`, with its CRLF.
pub fn line<S: AsRef<str>>(fields: &[S]) -> String {
    let mut out = String::new();
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let f = f.as_ref();
        if f.contains([',', '"', '\r', '\n']) {
            out.push('"');
            out.push_str(&f.replace('"', "\"\""));
            out.push('"');
        } else {
            out.push_str(f);
        }
    }
    out.push_str("\r\n");
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn fields_with_separators_are_quoted() {
        assert_eq!(super::line(&["a", "b,c", "say \"x\"", ""]), "a,\"b,c\",\"say \"\"x\"\"\",\r\n");
    }
}
