//! The `--config` TOML file: its values take the place of defaults only,
//! so flags and `RILL_*` variables still win; unknown keys and bad values
//! stop start-up with a message that names the key.

use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, FromArgMatches};

use super::{Cli, Command, ConfigError, ServeArgs};

/// Parses the command line and applies the `--config` file under it.
pub fn load() -> Result<Cli, ConfigError> {
    load_from(std::env::args_os())
}

/// [`load`] over the given arguments (the first is the program name).
/// A `--help`/`--version` request or a bad flag exits the process with
/// clap's message, as a command-line tool should; a bad value that came
/// from a `RILL_*` variable is reported under the variable's name.
pub fn load_from<I, T>(argv: I) -> Result<Cli, ConfigError>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let argv: Vec<std::ffi::OsString> = argv.into_iter().map(Into::into).collect();
    let mut cmd = Cli::command();
    // The top-level flags stand for `serve` only when no subcommand is
    // given; otherwise clap would still read (and refuse) their `RILL_*`
    // variables, so `RILL_LISTEN=bad rill serve --listen ok` or a stale
    // variable in the shell of `rill tail` would fail.
    if names_a_subcommand(&cmd, &argv) {
        cmd = cmd.mut_args(|a| a.env(None::<&str>));
    }
    let matches = match cmd.try_get_matches_from_mut(&argv) {
        Ok(m) => m,
        Err(e) => match super::env_source::rewrite(&e, &cmd, &argv) {
            Some(from_env) => from_env.exit(),
            None => e.exit(),
        },
    };
    let mut cli = Cli::from_arg_matches(&matches).map_err(|e| ConfigError::new(e.to_string()))?;
    match (&mut cli.command, matches.subcommand()) {
        (None, _) => apply_file(&mut cli.serve, &matches)?,
        (Some(Command::Serve(a)), Some((_, sub))) | (Some(Command::Config(a)), Some((_, sub))) => {
            apply_file(a, sub)?
        }
        _ => {}
    }
    Ok(cli)
}

/// Whether the first argument after the program's name is a subcommand.
fn names_a_subcommand(cmd: &clap::Command, argv: &[std::ffi::OsString]) -> bool {
    let Some(first) = argv.get(1).and_then(|a| a.to_str()) else {
        return false;
    };
    first == "help" || cmd.find_subcommand(first).is_some()
}

/// Puts the values of `args.config`, if any, where `matches` took defaults.
fn apply_file(args: &mut ServeArgs, matches: &ArgMatches) -> Result<(), ConfigError> {
    let Some(path) = args.config.clone() else {
        return Ok(());
    };
    let shown = path.display();
    let text = std::fs::read_to_string(&path)
        .map_err(|e| ConfigError::new(format!("cannot read config file {shown}: {e}")))?;
    let table: toml::Table = text
        .parse()
        .map_err(|e| ConfigError::new(format!("{shown} is not valid TOML: {e}")))?;
    let mut merged = toml::Table::try_from(&*args)
        .map_err(|e| ConfigError::new(format!("internal: cannot represent settings: {e}")))?;
    for (key, value) in table {
        let long = key.replace('_', "-");
        let id = Cli::command()
            .get_arguments()
            .find(|a| a.get_long() == Some(long.as_str()) && long != "config")
            .map(|a| a.get_id().as_str().to_owned());
        let Some(id) = id else {
            return Err(ConfigError::new(format!(
                "{shown}: unknown key `{key}` (keys are the `rill serve` flags without `--`, e.g. `mock-delay-ms`)"
            )));
        };
        check_key(&long, &value, &shown.to_string())?;
        if matches.value_source(&id) == Some(ValueSource::DefaultValue)
            || matches.value_source(&id).is_none()
        {
            merged.insert(long, value);
        }
    }
    // Not serialised (`rill config` must not print them): carry them over.
    let config = args.config.take();
    let secret = args.security.auth_jwt_secret.take();
    *args = merged
        .try_into()
        .map_err(|e| ConfigError::new(format!("{shown}: {e}")))?;
    args.config = config;
    if secret.is_some() {
        args.security.auth_jwt_secret = secret;
    }
    Ok(())
}

/// Checks one key's value alone, so an error names the key.
fn check_key(key: &str, value: &toml::Value, file: &str) -> Result<(), ConfigError> {
    let mut probe = toml::Table::try_from(ServeArgs::defaults())
        .map_err(|e| ConfigError::new(format!("internal: {e}")))?;
    probe.insert(key.to_owned(), value.clone());
    probe
        .try_into::<ServeArgs>()
        .map(drop)
        .map_err(|e| ConfigError::new(format!("{file}: bad value for `{key}`: {}", e.message())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Grace;

    fn write(text: &str) -> tempfile_path::Temp {
        tempfile_path::Temp::new(text)
    }

    mod tempfile_path {
        pub struct Temp(pub std::path::PathBuf);
        impl Temp {
            pub fn new(text: &str) -> Temp {
                let n: u64 = rand::random();
                let p = std::env::temp_dir().join(format!("rill-config-{n:x}.toml"));
                std::fs::write(&p, text).unwrap();
                Temp(p)
            }
        }
        impl Drop for Temp {
            fn drop(&mut self) {
                let _ = std::fs::remove_file(&self.0);
            }
        }
    }

    fn serve(argv: &[&str]) -> Result<ServeArgs, ConfigError> {
        let cli = load_from(std::iter::once("rill").chain(argv.iter().copied()))?;
        Ok(match cli.command {
            Some(Command::Serve(a)) | Some(Command::Config(a)) => a,
            _ => cli.serve,
        })
    }

    #[test]
    fn defaults_parse_and_validate() {
        let d = ServeArgs::defaults();
        assert_eq!(d.listen.to_string(), "127.0.0.1:8080");
        d.validate().unwrap();
        assert!(d.to_toml().unwrap().contains("mock-delay-ms = 100"));
    }

    #[test]
    fn file_fills_defaults_but_flags_win() {
        let f = write("mock-delay-ms = 7\nretry-ms = 1234\ngeneration-grace = \"never\"\n");
        let path = f.0.to_str().unwrap();
        let a = serve(&["--config", path]).unwrap();
        assert_eq!(a.mock_delay_ms, 7);
        assert_eq!(a.retry_ms, 1234);
        assert_eq!(a.generation_grace, Grace::Never);
        let a = serve(&["serve", "--config", path, "--mock-delay-ms", "9"]).unwrap();
        assert_eq!(a.mock_delay_ms, 9);
        assert_eq!(a.retry_ms, 1234);
    }

    #[test]
    fn security_keys_come_from_the_file_and_the_secret_survives() {
        let f = write("cors-origin = [\"https://app.example\"]\nmax-connections = 5\n");
        let path = f.0.to_str().unwrap();
        let secret = "0123456789abcdef0123456789abcdef";
        let a = serve(&["--config", path, "--auth-jwt-secret", secret]).unwrap();
        assert_eq!(a.security.cors_origins, ["https://app.example"]);
        assert_eq!(a.security.max_connections, 5);
        assert_eq!(a.security.auth_jwt_secret.as_deref(), Some(secret));
        assert!(
            !a.to_toml().unwrap().contains(secret),
            "rill config never prints the secret"
        );
    }

    #[test]
    fn unknown_keys_and_bad_values_name_the_key() {
        let f = write("mock-delay = 7\n");
        let e = serve(&["--config", f.0.to_str().unwrap()]).unwrap_err();
        assert!(e.to_string().contains("unknown key `mock-delay`"), "{e}");
        let f = write("listen = \"not an address\"\n");
        let e = serve(&["--config", f.0.to_str().unwrap()]).unwrap_err();
        assert!(e.to_string().contains("`listen`"), "{e}");
        let f = write("mock-delay-ms = -3\n");
        let e = serve(&["--config", f.0.to_str().unwrap()]).unwrap_err();
        assert!(e.to_string().contains("`mock-delay-ms`"), "{e}");
        let f = write("this is = not toml [\n");
        let e = serve(&["--config", f.0.to_str().unwrap()]).unwrap_err();
        assert!(e.to_string().contains("not valid TOML"), "{e}");
    }
}
