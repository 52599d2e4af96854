//! `parti config check FILE` and `parti config defaults`.

use parti::Config;
use std::path::Path;

/// Arguments of `parti config`.
#[derive(clap::Subcommand, Debug)]
pub enum ConfigCmd {
    /// Validate a configuration file (.toml, .yaml/.yml) and print the
    /// effective configuration, defaults filled in.
    Check {
        /// The file.
        file: std::path::PathBuf,
        /// Print the effective configuration as YAML (default: TOML).
        #[arg(long)]
        yaml: bool,
    },
    /// Print the default configuration.
    Defaults {
        /// As YAML.
        #[arg(long, conflicts_with = "toml")]
        yaml: bool,
        /// As TOML (the default).
        #[arg(long)]
        toml: bool,
    },
}

/// Reads and validates a configuration file; YAML for `.yaml`/`.yml`, TOML
/// otherwise; Parti's keys or the Go library's. Errors name the file and the
/// field.
pub fn load_config_file(path: &Path) -> Result<Config, String> {
    load_config_file_with_warnings(path).map(|(config, _)| config)
}

/// [`load_config_file`], also returning the warnings about Go settings that
/// were ignored or adjusted.
pub fn load_config_file_with_warnings(path: &Path) -> Result<(Config, Vec<String>), String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    parse_config(path, &text).map_err(|e| format!("{}: {e}", path.display()))
}

fn is_yaml(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml")
    )
}

/// Parses `text` as the format `path`'s extension says, with the warnings
/// about Go settings that have no meaning here.
pub fn parse_config(path: &Path, text: &str) -> Result<(Config, Vec<String>), String> {
    if is_yaml(path) {
        Config::from_yaml_with_warnings(text)
    } else {
        Config::from_toml_with_warnings(text)
    }
    .map(|(config, warnings)| (config, warnings.iter().map(|w| w.to_string()).collect()))
    .map_err(|e| e.to_string())
}

/// `config` as TOML or YAML, followed by the derived values as comments.
pub fn render_config(config: &Config, yaml: bool) -> Result<String, String> {
    let mut text = if yaml {
        serde_norway::to_string(config).map_err(|e| e.to_string())?
    } else {
        toml::to_string(config).map_err(|e| e.to_string())?
    };
    if !text.ends_with('\n') {
        text.push('\n');
    }
    let d = |v: std::time::Duration| humantime::format_duration(v).to_string();
    text.push_str(&format!(
        "# derived:\n\
         #   emergency_grace = {}{}\n\
         #   hook_budget = {}{}\n\
         #   ownership lease (heartbeat_ttl - lease_safety_margin) = {}\n\
         #   leadership lease = {}\n",
        d(config.effective_emergency_grace()),
        if config.emergency_grace.is_none() {
            " (default: 1.5 x heartbeat_interval)"
        } else {
            ""
        },
        d(config.effective_hook_budget()),
        if config.hook_budget.is_none() {
            " (default)"
        } else {
            ""
        },
        d(config.ownership_lease()),
        d(config.leadership_lease()),
    ));
    Ok(text)
}

/// Runs `parti config …`.
pub fn run(cmd: ConfigCmd) -> Result<(), String> {
    match cmd {
        ConfigCmd::Check { file, yaml } => {
            let (config, warnings) = load_config_file_with_warnings(&file)?;
            for warning in &warnings {
                eprintln!("warning: {}: {warning}", file.display());
            }
            println!("# {}: valid; effective configuration:", file.display());
            print!("{}", render_config(&config, yaml)?);
        }
        ConfigCmd::Defaults { yaml, toml: _ } => {
            print!("{}", render_config(&Config::default(), yaml)?);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_round_trip_in_both_formats() {
        for yaml in [false, true] {
            let text = render_config(&Config::default(), yaml).unwrap();
            assert!(text.contains("heartbeat_interval"), "{text}");
            assert!(text.contains("2s"), "durations are human-readable: {text}");
            assert!(text.contains("emergency_grace = 3s"), "{text}");
            let path = Path::new(if yaml { "c.yaml" } else { "c.toml" });
            let (back, warnings) = parse_config(path, &text).unwrap();
            assert_eq!(back, Config::default());
            assert!(warnings.is_empty(), "{warnings:?}");
        }
    }

    #[test]
    fn check_fills_defaults_and_names_bad_fields() {
        let (config, _) = parse_config(
            Path::new("g.toml"),
            "group = \"orders\"\nheartbeat_interval = \"500ms\"\nheartbeat_ttl = \"2s\"\n",
        )
        .unwrap();
        let text = render_config(&config, false).unwrap();
        assert!(text.contains("group = \"orders\""), "{text}");
        assert!(text.contains("heartbeat_interval = \"500ms\""), "{text}");
        assert!(text.contains("election_ttl = \"5s\""), "{text}");
        let bad = parse_config(Path::new("g.toml"), "heartbeat_ttl = \"1s\"\n").unwrap_err();
        assert!(bad.contains("heartbeat_ttl"), "{bad}");
        let unknown = parse_config(Path::new("g.yaml"), "heartbeat_intervl: 2s\n").unwrap_err();
        assert!(unknown.contains("heartbeat_intervl"), "{unknown}");
        let malformed = parse_config(Path::new("g.toml"), "election_ttl = \"soon\"\n").unwrap_err();
        assert!(
            malformed.contains("election_ttl") || malformed.contains("soon"),
            "{malformed}"
        );
    }

    #[test]
    fn missing_files_are_named() {
        let err = load_config_file(Path::new("/nonexistent/parti.toml")).unwrap_err();
        assert!(err.contains("/nonexistent/parti.toml"), "{err}");
    }
}
