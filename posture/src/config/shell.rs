//! Splitting a command line given as one string (`--kubelet-args "..."`) the way a POSIX
//! shell would: blanks separate words, single quotes keep everything, double quotes keep
//! everything but `\"`, `\\`, `\$` and `` \` ``, and a backslash outside quotes escapes
//! the next character. No expansion happens: the string is data, never run.

/// Splits `line` into words, or says why it cannot.
pub fn split(line: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' | '\n' | '\r' => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => word.push(c),
                        None => return Err("unterminated single quote".to_owned()),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\' | '$' | '`')) => word.push(c),
                            Some('\n') => {}
                            Some(c) => {
                                word.push('\\');
                                word.push(c);
                            }
                            None => return Err("unterminated double quote".to_owned()),
                        },
                        Some(c) => word.push(c),
                        None => return Err("unterminated double quote".to_owned()),
                    }
                }
            }
            '\\' => {
                in_word = true;
                match chars.next() {
                    Some('\n') => {}
                    Some(c) => word.push(c),
                    None => return Err("trailing backslash".to_owned()),
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::split;

    #[test]
    fn splits_like_a_shell() {
        let cases: &[(&str, &[&str])] = &[
            ("a b  c", &["a", "b", "c"]),
            (r#"--node-labels "" --v=2"#, &["--node-labels", "", "--v=2"]),
            (r#"--x='a b' --y="c \"d\"""#, &["--x=a b", r#"--y=c "d""#]),
            (r"a\ b", &["a b"]),
            ("", &[]),
        ];
        for (line, want) in cases {
            assert_eq!(split(line).expect("splits"), *want, "split({line:?})");
        }
        assert!(split("'open").is_err());
        assert!(split("\"open").is_err());
    }
}
