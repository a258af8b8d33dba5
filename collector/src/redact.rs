//! Storage URLs as they may be shown: the password replaced by `***`.
//!
//! `validate`, logs and errors print the `storage` URL; a PostgreSQL URL may carry a
//! password in its user info (`postgres://user:secret@host/db`) or as a query
//! parameter (`?password=secret`), and neither may reach a terminal or a log.

/// What replaces a password.
const MASK: &str = "***";

/// `url` with any password masked; the rest is kept as written, so the URL is still
/// recognisable.
pub fn url(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        // Not a URL (e.g. a libpq keyword string): nothing can be told apart safely.
        return if url.to_ascii_lowercase().contains("password") {
            MASK.to_owned()
        } else {
            url.to_owned()
        };
    };
    let (scheme, rest) = url.split_at(scheme_end);
    // The authority ends at the first '/', '?' or '#'; user info at its last '@' (a
    // password may itself hold an unescaped '@').
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let authority = match authority.rfind('@') {
        Some(at) => {
            let (userinfo, host) = authority.split_at(at);
            match userinfo.split_once(':') {
                Some((user, _password)) => format!("{user}:{MASK}{host}"),
                None => authority.to_owned(),
            }
        }
        None => authority.to_owned(),
    };
    format!("{scheme}{authority}{}", query(tail))
}

/// The path, query and fragment with `password=` parameters masked.
fn query(tail: &str) -> String {
    let Some((path, query)) = tail.split_once('?') else {
        return tail.to_owned();
    };
    let (query, fragment) = match query.split_once('#') {
        Some((query, fragment)) => (query, Some(fragment)),
        None => (query, None),
    };
    let masked: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((key, _)) if key.eq_ignore_ascii_case("password") => format!("{key}={MASK}"),
            _ => pair.to_owned(),
        })
        .collect();
    let mut out = format!("{path}?{}", masked.join("&"));
    if let Some(fragment) = fragment {
        out.push('#');
        out.push_str(fragment);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::url;

    #[test]
    fn passwords_are_masked_and_the_rest_kept() {
        for (given, shown) in [
            (
                "postgres://nodeward:s3cret@db:5432/nodeward",
                "postgres://nodeward:***@db:5432/nodeward",
            ),
            (
                "postgresql://u:p%40ss@db/x?sslmode=verify-full&sslrootcert=/etc/ca.crt",
                "postgresql://u:***@db/x?sslmode=verify-full&sslrootcert=/etc/ca.crt",
            ),
            // An unescaped '@' in the password: the host is after the last one.
            ("postgres://u:a@b@db/x", "postgres://u:***@db/x"),
            ("postgres://u:@db/x", "postgres://u:***@db/x"),
            (
                "postgres://u@db/x?sslmode=require&password=hunter2",
                "postgres://u@db/x?sslmode=require&password=***",
            ),
            (
                "postgres://db/x?PASSWORD=hunter2#f",
                "postgres://db/x?PASSWORD=***#f",
            ),
            // Nothing to hide.
            (
                "postgres://nodeward@db/nodeward",
                "postgres://nodeward@db/nodeward",
            ),
            ("postgresql://db", "postgresql://db"),
            (
                "sqlite:///var/lib/nodeward/collector.db",
                "sqlite:///var/lib/nodeward/collector.db",
            ),
            ("host=db password=hunter2", "***"),
        ] {
            assert_eq!(url(given), shown, "{given}");
        }
    }
}
