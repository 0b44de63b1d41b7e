//! The base route, the catalog and tag listings.

use super::*;

pub(super) async fn serve(
    app: &AppState,
    route: V2Route<'_>,
    method: &Method,
    query: &[(String, String)],
    access: Access<'_>,
) -> Result<Response> {
    let Access { caller, env, ns, .. } = access;
    let reg = &app.registry;
    match (route, method.clone()) {
        (V2Route::Base, Method::GET | Method::HEAD) => Ok(json_response(StatusCode::OK, "{}".into())),
        (V2Route::Catalog, Method::GET) => {
            let (n, last) = page_params(query)?;
            // One page of this account's repositories (the registry steps over other accounts').
            let page = reg.catalog(&ns.account, n, last.map(|l| ns.key(l)).as_deref()).await?;
            let names: Vec<String> = page.items.iter().map(|k| ns.unkey(k)).collect();
            let link = next_link("/v2/_catalog", n, &Page { items: names.clone(), more: page.more });
            // Only the repositories the caller may describe.
            let mut visible = Vec::with_capacity(page.items.len());
            for (name, key) in names.iter().zip(&page.items) {
                let allowed = match caller {
                    None => true,
                    Some(c) => app
                        .authorizer
                        .authorize(c, "ecr:DescribeRepositories", Target::Repository(key), env)
                        .await?
                        .is_ok(),
                };
                if allowed {
                    visible.push(name);
                }
            }
            let body = serde_json::json!({ "repositories": visible });
            Ok(with_link(json_response(StatusCode::OK, body.to_string()), link))
        }
        (V2Route::Tags { name }, Method::GET) => {
            let (n, last) = page_params(query)?;
            let page = reg.list_tags(name, n, last).await?;
            let link = next_link(&format!("/v2/{name}/tags/list"), n, &page);
            let body = serde_json::json!({ "name": ns.unkey(name), "tags": page.items });
            Ok(with_link(json_response(StatusCode::OK, body.to_string()), link))
        }
        _ => Err(unsupported()),
    }
}
