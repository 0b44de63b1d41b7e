//! Configuration: embedded defaults, then a TOML file (`--config`), then `BERTH_*` environment
//! variables, then command-line flags, each overriding the one before.

use std::net::SocketAddr;
use std::path::PathBuf;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Config {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Where blobs, upload sessions and the metadata database live.
    pub data_dir: PathBuf,
    /// Log format: `text` or `json`.
    pub log_format: String,
    /// PEM certificate chain; with `tls_key`, Berth serves HTTPS.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for `tls_cert`.
    pub tls_key: Option<PathBuf>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "127.0.0.1:5000".parse().expect("valid default address"),
            data_dir: PathBuf::from("berth-data"),
            log_format: "text".into(),
            tls_cert: None,
            tls_key: None,
        }
    }
}

/// Flags given on the command line; `None` leaves the lower layers' value.
#[derive(Debug, Default, Serialize)]
pub struct Overrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<SocketAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_format: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<PathBuf>,
}

pub fn load(file: Option<&PathBuf>, overrides: &Overrides) -> Result<Config, Box<figment::Error>> {
    let mut f = Figment::from(Serialized::defaults(Config::default()));
    if let Some(path) = file {
        if !path.exists() {
            return Err(Box::new(figment::Error::from(format!("config file {} does not exist", path.display()))));
        }
        f = f.merge(Toml::file(path));
    }
    f.merge(Env::prefixed("BERTH_").only(&["listen", "data_dir", "log_format", "tls_cert", "tls_key"]))
        .merge(Serialized::defaults(overrides))
        .extract()
        .map_err(Box::new)
}

#[cfg(test)]
#[allow(clippy::result_large_err)] // figment::Jail's closure signature is not ours
mod tests {
    use super::*;

    #[test]
    fn layers_override_in_order() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "berth.toml",
                "listen = \"127.0.0.1:6000\"\ndata_dir = \"/from-file\"\nlog_format = \"json\"",
            )?;
            jail.set_env("BERTH_DATA_DIR", "/from-env");
            let file = PathBuf::from("berth.toml");
            let c = load(Some(&file), &Overrides::default()).unwrap();
            assert_eq!(c.listen.port(), 6000);
            assert_eq!(c.data_dir, PathBuf::from("/from-env"));
            assert_eq!(c.log_format, "json");
            let o = Overrides { data_dir: Some("/from-flag".into()), ..Default::default() };
            assert_eq!(load(Some(&file), &o).unwrap().data_dir, PathBuf::from("/from-flag"));
            assert!(load(Some(&PathBuf::from("missing.toml")), &o).is_err());
            Ok(())
        });
    }

    #[test]
    fn defaults() {
        figment::Jail::expect_with(|_| {
            let c = load(None, &Overrides::default()).unwrap();
            assert_eq!(c.listen.to_string(), "127.0.0.1:5000");
            assert_eq!(c.data_dir, PathBuf::from("berth-data"));
            Ok(())
        });
    }
}
