//! A signed-in client of `podid server`'s web console, and small readers of its
//! HTML (cells of a class, an element's link, ids present) for tests and benchmarks.

/// A console session: the `podid_session` cookie a sign-in set.
#[derive(Clone)]
pub struct ConsoleSession {
    endpoint: String,
    cookie: String,
    client: reqwest::Client,
}

/// The key id only: the cookie is a credential.
impl std::fmt::Debug for ConsoleSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ConsoleSession({})", self.endpoint)
    }
}

/// An answer: status, `Location` (if any) and body.
#[derive(Debug, Clone)]
pub struct ConsoleAnswer {
    /// The HTTP status.
    pub status: u16,
    /// The `Location` header of a redirect.
    pub location: Option<String>,
    /// The body as text.
    pub body: String,
}

/// A client that does not follow redirects.
fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("a reqwest client")
}

impl ConsoleSession {
    /// Signs in at `endpoint` (`http://host:port`) with a key of the keys file.
    ///
    /// # Panics
    /// When the sign-in is not answered 303 with a session cookie.
    pub async fn sign_in(endpoint: &str, access_key_id: &str, secret: &str) -> ConsoleSession {
        let client = client();
        let response = client
            .post(format!("{endpoint}/console/login"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(url_encoded(&[
                ("access_key_id", access_key_id),
                ("secret_access_key", secret),
            ]))
            .send()
            .await
            .expect("POST /console/login");
        assert_eq!(
            response.status().as_u16(),
            303,
            "sign-in of {access_key_id}"
        );
        let cookie = response
            .headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(|v| {
                v.split(';')
                    .next()
                    .filter(|p| p.starts_with("podid_session="))
            })
            .expect("a podid_session cookie")
            .to_owned();
        ConsoleSession {
            endpoint: endpoint.to_owned(),
            cookie,
            client,
        }
    }

    /// `GET path` (e.g. `/console/associations?cluster=blue`) with the session cookie.
    ///
    /// # Panics
    /// When the server cannot be reached.
    pub async fn get(&self, path: &str) -> ConsoleAnswer {
        let response = self
            .client
            .get(format!("{}{path}", self.endpoint))
            .header("cookie", &self.cookie)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        ConsoleAnswer::read(response).await
    }
}

impl ConsoleSession {
    /// `POST path` with the session cookie and a url-encoded form of `pairs`.
    ///
    /// # Panics
    /// When the server cannot be reached.
    pub async fn post(&self, path: &str, pairs: &[(&str, &str)]) -> ConsoleAnswer {
        let response = self
            .client
            .post(format!("{}{path}", self.endpoint))
            .header("cookie", &self.cookie)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(url_encoded(pairs))
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {path}: {e}"));
        ConsoleAnswer::read(response).await
    }
}

impl ConsoleAnswer {
    /// Status, `Location` and body of `response`.
    async fn read(response: reqwest::Response) -> ConsoleAnswer {
        let status = response.status().as_u16();
        let location = response
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = response.text().await.expect("a body");
        ConsoleAnswer {
            status,
            location,
            body,
        }
    }
}

/// The text (escapes undone) of each `.field-error` for input `field`, in order.
pub fn field_errors(html: &str, field: &str) -> Vec<String> {
    let marker = format!("data-field=\"{field}\"");
    html.match_indices(&marker)
        .filter_map(|(at, _)| {
            let tag_start = html[..at].rfind('<')?;
            html[tag_start..at].contains("field-error").then_some(())?;
            let inner = &html[at + html[at..].find('>')? + 1..];
            Some(unescape(&strip_tags(&inner[..inner.find("</")?])))
        })
        .collect()
}

/// `application/x-www-form-urlencoded` of `pairs` (percent-encoding all but alphanumerics).
pub fn url_encoded(pairs: &[(&str, &str)]) -> String {
    let encode = |s: &str| {
        s.bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect::<String>()
    };
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// HTML text with its character references undone: the named `&lt;` `&gt;` `&quot;`
/// `&apos;` `&amp;` and numeric ones (`&#60;`, `&#x3c;`); anything else is kept as it is.
pub fn unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        let decoded = rest.find(';').and_then(|end| {
            let name = &rest[1..end];
            let c = match name {
                "lt" => Some('<'),
                "gt" => Some('>'),
                "quot" => Some('"'),
                "apos" => Some('\''),
                "amp" => Some('&'),
                _ => {
                    let number = name.strip_prefix('#')?;
                    let code = match number.strip_prefix(['x', 'X']) {
                        Some(hex) => u32::from_str_radix(hex, 16).ok()?,
                        None => number.parse().ok()?,
                    };
                    char::from_u32(code)
                }
            };
            c.map(|c| (c, end + 1))
        });
        match decoded {
            Some((c, len)) => {
                out.push(c);
                rest = &rest[len..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// The `value` (references undone) of the `<input>` named `name`, if the page has one.
pub fn input_value(html: &str, name: &str) -> Option<String> {
    let at = html.find(&format!("name=\"{name}\""))?;
    let tag_start = html[..at].rfind('<')?;
    let tag_end = at + html[at..].find('>')?;
    let value = html[tag_start..tag_end].split("value=\"").nth(1)?;
    Some(unescape(&value[..value.find('"')?]))
}

/// The text (tags removed, escapes undone) of each `<td>` whose class list holds `class`, in order.
pub fn cells(html: &str, class: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = html;
    while let Some(start) = rest.find("<td class=\"") {
        let after = &rest[start + 11..];
        let Some(quote) = after.find('"') else { break };
        let classes = &after[..quote];
        let Some(open_end) = after.find('>') else {
            break;
        };
        let inner = &after[open_end + 1..];
        let Some(close) = inner.find("</td>") else {
            break;
        };
        if classes.split_whitespace().any(|c| c == class) {
            out.push(unescape(&strip_tags(&inner[..close])));
        }
        rest = &inner[close..];
    }
    out
}

/// `text` without its tags.
fn strip_tags(text: &str) -> String {
    let mut out = String::new();
    let mut in_tag = false;
    for c in text.chars() {
        match c {
            '<' => in_tag = true,
            '>' => in_tag = false,
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    out
}

/// The `href` (escapes undone) of the element with `id="id"`, if the page has one.
pub fn href_of(html: &str, id: &str) -> Option<String> {
    let at = html.find(&format!("id=\"{id}\""))?;
    let tag_start = html[..at].rfind('<')?;
    let tag_end = at + html[at..].find('>')?;
    let tag = &html[tag_start..tag_end];
    let href = tag.split("href=\"").nth(1)?;
    Some(unescape(&href[..href.find('"')?]))
}

/// Whether the page has an element with `id="id"`.
pub fn has_id(html: &str, id: &str) -> bool {
    html.contains(&format!("id=\"{id}\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_cells_and_links() {
        let html =
            "<table><tr><td class=\"cluster\">blue</td><td class=\"role-arn mono\">a&amp;b</td>\
                    <td class=\"association-id mono\"><a href=\"/x\">a-1</a></td></tr>\
                    <tr><td class=\"cluster\">&lt;script&gt;</td></tr></table>\
                    <a id=\"next-page\" href=\"/console/associations?a=1&amp;page=a1.2\">n</a>";
        assert_eq!(cells(html, "cluster"), ["blue", "<script>"]);
        assert_eq!(cells(html, "role-arn"), ["a&b"]);
        assert_eq!(cells(html, "association-id"), ["a-1"]);
        assert_eq!(
            href_of(html, "next-page").as_deref(),
            Some("/console/associations?a=1&page=a1.2")
        );
        assert_eq!(href_of(html, "prev-page"), None);
        assert!(has_id(html, "next-page"));
        assert_eq!(url_encoded(&[("a b", "x/y")]), "a%20b=x%2Fy");
        assert_eq!(
            unescape("&#60;b&#x3E;&#38;&amp;amp; & &bogus; &#xZZ;"),
            "<b>&&amp; & &bogus; &#xZZ;"
        );
        let form = "<input name=\"namespace\" value=\"&#60;b&#62;x&#34;\">";
        assert_eq!(input_value(form, "namespace").as_deref(), Some("<b>x\""));
        assert_eq!(input_value(form, "role"), None);
    }
}
