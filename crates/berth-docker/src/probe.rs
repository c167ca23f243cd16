//! Questions berth asks the engine before it runs anything (`berth check`, and the start-up
//! warnings of `berth serve`): whether an image is there, whether its registry knows it, and
//! where the engine runs.

use crate::{
    engine::Engine,
    error::{DockerError, is_not_found},
};

impl Engine {
    /// Whether the engine has the image `image`, as `docker image inspect` finds it (by name
    /// and tag, or by id).
    pub async fn image_exists(&self, image: &str) -> Result<bool, DockerError> {
        match self.docker()?.inspect_image(image).await {
            Ok(_) => Ok(true),
            Err(error) if is_not_found(&error) => Ok(false),
            Err(error) => Err(error.into()),
        }
    }

    /// Asks the image's registry, through the engine, whether it has `image`, without pulling
    /// it (`GET /distribution/<image>/json`, anonymously, as berth pulls).
    pub async fn registry_has_image(&self, image: &str) -> Result<(), DockerError> {
        match self.docker()?.inspect_registry_image(image, None).await {
            Ok(_) => Ok(()),
            Err(source) => Err(DockerError::Lookup { image: image.to_owned(), source }),
        }
    }

    /// The engine's host name (`docker info`'s `Name`): the machine (or container) whose
    /// filesystem the sources of bind mounts are paths of.
    pub async fn host_name(&self) -> Result<String, DockerError> {
        Ok(self.docker()?.info().await?.name.unwrap_or_default())
    }

    /// Whether the engine is reached through a unix socket, so on this machine (or on the host
    /// of a container the socket is shared into), rather than over the network.
    pub fn is_local(&self) -> bool {
        self.host().starts_with("unix://")
    }
}
