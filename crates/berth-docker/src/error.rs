//! Errors of the Docker side of berth.

/// What went wrong while talking to the Docker engine.
///
/// Messages are what an operator sees. They never contain environment values: berth passes
/// secrets to containers through the environment.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DockerError {
    /// The engine could not be reached, or the configuration of the connection is wrong.
    #[error("cannot connect to the Docker engine: {0}")]
    Connect(#[source] bollard::errors::Error),
    /// The image is not present on the engine and pulling is not allowed.
    #[error(
        "image {image:?} is not present on the Docker engine and image_pull is \"never\": \
         pull or build it first, or set image_pull = \"if-missing\""
    )]
    ImageMissing {
        /// The image reference from the backend's configuration.
        image: String,
    },
    /// Pulling the image failed.
    #[error("cannot pull image {image:?}: {source}")]
    Pull {
        /// The image reference from the backend's configuration.
        image: String,
        /// What the engine answered.
        #[source]
        source: bollard::errors::Error,
    },
    /// The image's registry, asked through the engine, does not know the image or does not
    /// answer (`berth check` with `image_pull = "if-missing"`).
    #[error("its registry does not know image {image:?} or cannot be reached: {source}")]
    Lookup {
        /// The image reference from the backend's configuration.
        image: String,
        /// What the engine answered.
        #[source]
        source: bollard::errors::Error,
    },
    /// The engine refused to create the container (bad option, name conflict, ...).
    #[error("cannot create container {name}: {source}")]
    Create {
        /// The container's name.
        name: String,
        /// What the engine answered.
        #[source]
        source: bollard::errors::Error,
    },
    /// Attaching to the container's standard streams failed.
    #[error("cannot attach to container {name}: {source}")]
    Attach {
        /// The container's name.
        name: String,
        /// What the engine answered.
        #[source]
        source: bollard::errors::Error,
    },
    /// The container was created but did not start (missing executable, bad user, ...).
    #[error("cannot start container {name}: {source}")]
    Start {
        /// The container's name.
        name: String,
        /// What the engine answered.
        #[source]
        source: bollard::errors::Error,
    },
    /// A docker-exec backend's container does not exist.
    #[error("container {container:?} does not exist on the Docker engine: create and start it")]
    ContainerMissing {
        /// The container's name or id, as configured.
        container: String,
    },
    /// A docker-exec backend's container exists but does not run.
    #[error("container {container:?} is not running (its state is {status}): start it")]
    ContainerNotRunning {
        /// The container's name or id, as configured.
        container: String,
        /// The engine's status of the container.
        status: String,
    },
    /// The engine refused to create or start an exec.
    #[error("cannot start an exec in container {container:?}: {source}")]
    Exec {
        /// The container's name or id, as configured.
        container: String,
        /// What the engine answered.
        #[source]
        source: bollard::errors::Error,
    },
    /// The exec's command could not be run in the container (exit code 126 or 127).
    #[error("cannot run `{command}` in container {container:?} (exit code {code}): is it there, and executable?")]
    ExecFailed {
        /// The container's name or id, as configured.
        container: String,
        /// The command line.
        command: String,
        /// 126 (not executable) or 127 (not found).
        code: i64,
    },
    /// Any other answer of the engine.
    #[error("Docker engine error: {0}")]
    Api(#[from] bollard::errors::Error),
}

impl DockerError {
    /// Whether the engine itself is unreachable, as opposed to refusing this one request.
    ///
    /// berth reports the former as "backend not ready" and retries later; the latter is a
    /// configuration problem of the backend.
    pub fn is_engine_unreachable(&self) -> bool {
        let source = match self {
            DockerError::Connect(_) => return true,
            DockerError::ImageMissing { .. }
            | DockerError::ContainerMissing { .. }
            | DockerError::ContainerNotRunning { .. }
            | DockerError::ExecFailed { .. } => return false,
            DockerError::Pull { source, .. }
            | DockerError::Lookup { source, .. }
            | DockerError::Create { source, .. }
            | DockerError::Attach { source, .. }
            | DockerError::Start { source, .. }
            | DockerError::Exec { source, .. }
            | DockerError::Api(source) => source,
        };
        is_transport_error(source)
    }
}

/// Whether a bollard error means that the request did not get an answer from the engine.
pub(crate) fn is_transport_error(error: &bollard::errors::Error) -> bool {
    use bollard::errors::Error as E;
    matches!(
        error,
        E::HyperResponseError { .. }
            | E::HyperLegacyError { .. }
            | E::IOError { .. }
            | E::RequestTimeoutError
            | E::SocketNotFoundError(_)
    )
}

/// Whether the engine answered 404 (no such container or image).
pub(crate) fn is_not_found(error: &bollard::errors::Error) -> bool {
    matches!(error, bollard::errors::Error::DockerResponseServerError { status_code: 404, .. })
}
