//! Credentials for a source: read at use from a file or variable, never logged.

use super::error::{Error, Result};
use std::fmt;
use std::path::PathBuf;

/// Where a secret is read from, each time it is needed (so a rotated secret is picked up).
#[derive(Clone, PartialEq, Eq)]
pub enum Secret {
    /// A file holding the secret; surrounding whitespace is trimmed.
    File(PathBuf),
    /// An environment variable holding the secret.
    Env(String),
}

impl Secret {
    /// Reads the secret's value now.
    ///
    /// # Errors
    /// [`Error::Io`] for an unreadable file, [`Error::MissingSecret`] for an unset variable.
    pub(crate) fn read(&self) -> Result<String> {
        let value = match self {
            Secret::File(path) => std::fs::read_to_string(path).map_err(|source| Error::Io {
                path: path.clone(),
                source,
            })?,
            Secret::Env(var) => std::env::var(var).map_err(|_| Error::MissingSecret { var: var.clone() })?,
        };
        Ok(value.trim().to_owned())
    }
}

// Names where the secret lives, never the secret.
impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Secret::File(path) => write!(f, "File({})", path.display()),
            Secret::Env(var) => write!(f, "Env({var})"),
        }
    }
}

/// How a source authenticates.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Auth {
    /// No credentials; the remote must allow anonymous reads.
    #[default]
    None,
    /// An access token over https, sent as the password of user `x-access-token`
    /// (GitHub's convention; GitLab, Gitea and Bitbucket accept any user name with a token).
    Token {
        /// Where the token is.
        token: Secret,
    },
    /// A user name and password over https.
    Basic {
        /// The user name.
        username: String,
        /// Where the password is.
        password: Secret,
    },
    /// An ssh key, with the only host keys to trust.
    SshKey {
        /// The private key file (`ssh -i`).
        key_file: PathBuf,
        /// The known-hosts file; hosts not in it are refused.
        known_hosts_file: PathBuf,
    },
}

/// A user name and password ready for an https exchange.
#[derive(Clone)]
pub(crate) struct Login {
    pub(crate) username: String,
    pub(crate) password: String,
}

impl Auth {
    /// The https login, read now; `None` when this auth has none.
    ///
    /// # Errors
    /// The secret cannot be read.
    pub(crate) fn login(&self) -> Result<Option<Login>> {
        Ok(match self {
            Auth::Token { token } => Some(Login {
                username: "x-access-token".into(),
                password: token.read()?,
            }),
            Auth::Basic { username, password } => Some(Login {
                username: username.clone(),
                password: password.read()?,
            }),
            Auth::None | Auth::SshKey { .. } => None,
        })
    }

    /// The `core.sshCommand` for this auth: the system `ssh` with only this key, strict host
    /// key checking against only this known-hosts file, no prompts, and bounded waits.
    /// `None` when this auth is not an ssh key.
    pub(crate) fn ssh_command(&self, timeout_secs: u64) -> Option<String> {
        let Auth::SshKey {
            key_file,
            known_hosts_file,
        } = self
        else {
            return None;
        };
        let timeout = timeout_secs.max(1);
        Some(format!(
            "ssh -i {} -o IdentitiesOnly=yes -o StrictHostKeyChecking=yes -o UserKnownHostsFile={} \
             -o BatchMode=yes -o ConnectTimeout={timeout} -o ServerAliveInterval={timeout} -o ServerAliveCountMax=1",
            shell_quote(&key_file.to_string_lossy()),
            shell_quote(&known_hosts_file.to_string_lossy()),
        ))
    }
}

/// Quotes `word` for a POSIX shell: inside single quotes nothing is special, and a single
/// quote is written as `'\''`.
pub(crate) fn shell_quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', r"'\''"))
}

/// The credentials callback for gix: answers every request with `login` (or with nothing),
/// so the user's credential helpers and terminal prompts are never consulted.
pub(crate) fn credentials_fn(
    login: Option<Login>,
) -> impl FnMut(gix::credentials::helper::Action) -> gix::Result<Option<gix::credentials::protocol::Outcome>>
{
    move |action| match (action, &login) {
        (gix::credentials::helper::Action::Get(context), Some(login)) => {
            Ok(Some(gix::credentials::protocol::Outcome {
                identity: gix::sec::identity::Account {
                    username: login.username.clone(),
                    password: login.password.clone(),
                    oauth_refresh_token: None,
                },
                next: context.into(),
            }))
        }
        // Store and erase are for helpers that remember credentials; ours are configuration.
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssh_command_quotes_paths() {
        let auth = Auth::SshKey {
            key_file: "/keys/my key's".into(),
            known_hosts_file: "/etc/kitsync/known hosts".into(),
        };
        let cmd = auth.ssh_command(30).expect("ssh auth");
        assert!(
            cmd.starts_with(r"ssh -i '/keys/my key'\''s' -o IdentitiesOnly=yes"),
            "{cmd}"
        );
        assert!(
            cmd.contains("UserKnownHostsFile='/etc/kitsync/known hosts'"),
            "{cmd}"
        );
        assert!(cmd.contains("StrictHostKeyChecking=yes"), "{cmd}");
        assert_eq!(Auth::None.ssh_command(30), None);
    }

    #[test]
    fn debug_never_shows_a_secret() {
        let auth = Auth::Basic {
            username: "bob".into(),
            password: Secret::Env("KITSYNC_TEST_PASSWORD".into()),
        };
        assert_eq!(
            format!("{auth:?}"),
            "Basic { username: \"bob\", password: Env(KITSYNC_TEST_PASSWORD) }"
        );
    }
}
