//! The quickstart's environment-move sample: Contoso and Fabrikam as tenants with an admin each
//! (tokens in `DATA/contoso-admin-token`, `DATA/fabrikam-admin-token`), and a production
//! environment `sales` registered for Contoso whose system users are Contoso's first users.

use anyhow::Result;
use ferry_client::Client;
use ferry_client::wire::NewOperator;
use serde_json::{Value, json};
use std::path::Path;

pub struct Sample {
    pub users: usize,
}

pub async fn register(dir: &Path, url: &str, admin: &Client) -> Result<Sample> {
    for (id, name) in [("contoso", "Contoso"), ("fabrikam", "Fabrikam")] {
        let body =
            json!({"id": id, "name": name, "domains": [format!("{id}.test")], "directories": [id]});
        admin.put_tenant(id, &body).await?;
        let v = admin
            .create_operator(&NewOperator {
                name: format!("{id}-admin"),
                tenant: Some(id.to_string()),
                viewer: false,
                password: None,
            })
            .await?;
        let token = &v.token;
        ferry_server::auth::write_private(
            &dir.join(format!("data/{id}-admin-token")),
            token.as_bytes(),
        )?;
    }
    let contoso = ferry_core::snapshot::parse_json(&std::fs::read(dir.join("contoso.json"))?)?;
    let users: Vec<Value> = contoso
        .iter()
        .filter(|o| o.kind == ferry_core::ObjectKind::User)
        .filter_map(|o| o.upn.as_ref())
        .take(25)
        .enumerate()
        .map(|(i, upn)| {
            json!({"id": format!("{:08x}-5a1e-4000-8000-{:012x}", i + 1, i + 1), "email": upn, "administrative": i == 0})
        })
        .collect();
    let n = users.len();
    let env = json!({
        "id": "sales", "tenant": "contoso", "name": "Sales", "url": "https://sales.crm.contoso.test",
        "org_id": "5a1e5000-0000-4000-8000-000000000001", "type": "production", "managed": true,
        "components": [
            {"kind": "canvas-app", "name": "Order entry", "solution_aware": true},
            {"kind": "flow", "name": "Notify sales", "enabled": true, "connection_references": ["shared_office365"],
             "http_trigger_url": "https://prod-00.westeurope.logic.azure.com/workflows/quickstart/triggers/manual/run"},
            {"kind": "bot", "name": "Sales assistant"}
        ],
        "system_users": users
    });
    let tenant_admin = Client::new(
        url,
        Some(
            std::fs::read_to_string(dir.join("data/contoso-admin-token"))?
                .trim()
                .to_string(),
        ),
    )?;
    tenant_admin.put_environment("sales", &env).await?;
    Ok(Sample { users: n })
}
