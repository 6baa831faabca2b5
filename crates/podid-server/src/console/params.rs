//! Query parameters of the console's filtered tables: reading the named ones and
//! writing a page's link that keeps them.

/// The values of `names` in a query string, trimmed, in the same order; missing
/// ones are empty and unknown parameters are ignored.
pub(crate) fn read<const N: usize>(raw: Option<&str>, names: [&str; N]) -> [String; N] {
    let mut values: [String; N] = std::array::from_fn(|_| String::new());
    for (name, value) in url::form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
        if let Some(i) = names.iter().position(|n| *n == name) {
            values[i] = value.trim().to_owned();
        }
    }
    values
}

/// `path` with the non-empty `pairs` and `page=<page>` as its query.
pub(crate) fn href(path: &str, pairs: &[(&str, &str)], page: &str) -> String {
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    for (name, value) in pairs {
        if !value.is_empty() {
            query.append_pair(name, value);
        }
    }
    query.append_pair("page", page);
    format!("{path}?{}", query.finish())
}
