//! The container this berth runs in, if the engine it talks to runs it: its id (for the
//! liveness of this run) and its Compose project and service (for a deployment name that
//! survives `docker compose up` recreating the container under a new id and host name).

use crate::engine::Engine;
use crate::error::{DockerError, is_not_found, is_transport_error};

/// The label Docker Compose puts on a container naming its project.
const COMPOSE_PROJECT: &str = "com.docker.compose.project";
/// The label Docker Compose puts on a container naming its service.
const COMPOSE_SERVICE: &str = "com.docker.compose.service";

/// The container this process runs in, as the engine knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnContainer {
    /// The container's full id.
    pub id: String,
    /// The Compose project and service of the container, when Compose made it.
    pub compose: Option<(String, String)>,
}

impl Engine {
    /// The container this process runs in, when the engine runs it; `None` on a host, or in a
    /// container of another engine (Docker-in-Docker, a remote engine, Kubernetes).
    pub async fn own_container(&self) -> Result<Option<OwnContainer>, DockerError> {
        let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
        let Some(id) = container_id(&read("/proc/self/mountinfo"), &read("/proc/self/cgroup")) else {
            return Ok(None);
        };
        match self.docker()?.inspect_container(&id, None).await {
            Ok(inspected) => {
                let labels = inspected.config.and_then(|config| config.labels).unwrap_or_default();
                let compose = match (labels.get(COMPOSE_PROJECT), labels.get(COMPOSE_SERVICE)) {
                    (Some(project), Some(service)) => Some((project.clone(), service.clone())),
                    _ => None,
                };
                Ok(Some(OwnContainer { id: inspected.id.unwrap_or(id), compose }))
            }
            Err(error) if is_not_found(&error) => Ok(None),
            // Refused (an engine proxy that allows less than the whole API): berth runs on as if
            // on a host, rather than create no container at all.
            Err(error) if !is_transport_error(&error) => {
                tracing::warn!(%error, "cannot inspect the container berth runs in; naming the deployment without it");
                Ok(None)
            }
            Err(error) => Err(error.into()),
        }
    }
}

/// The id of the container this process runs in, from its mount table (the engine bind-mounts
/// `/etc/hostname` from the container's own directory, `.../containers/<id>/hostname`) or, with
/// cgroup v1, its cgroup paths (`/docker/<id>`, `docker-<id>.scope`). With cgroup v2 and a
/// private cgroup namespace the cgroup file says only `0::/`, hence the mount table first.
fn container_id(mountinfo: &str, cgroup: &str) -> Option<String> {
    let hostname_mount = mountinfo.lines().find_map(|line| {
        let mut fields = line.split(' ');
        let root = fields.nth(3)?;
        (fields.next()? == "/etc/hostname").then_some(root)
    });
    hostname_mount.and_then(id_in_path).or_else(|| cgroup.lines().find_map(|line| id_in_path(line.rsplit(':').next()?)))
}

/// The first segment of `path` that is a container id (64 hexadecimal digits), with the
/// prefixes and suffix systemd's cgroup driver adds.
fn id_in_path(path: &str) -> Option<String> {
    path.split('/').find_map(|segment| {
        let segment = segment.strip_suffix(".scope").unwrap_or(segment);
        let segment = segment.strip_prefix("docker-").or_else(|| segment.strip_prefix("libpod-")).unwrap_or(segment);
        (segment.len() == 64 && segment.bytes().all(|b| b.is_ascii_hexdigit())).then(|| segment.to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "3f2b9c4e5d6a7b8c9d0e1f2a3b4c5d6e7f8a9b0c1d2e3f4a5b6c7d8e9f0a1b2c";

    #[test]
    fn the_container_id_is_found_where_engines_put_it() {
        let mount = |root: &str| {
            format!(
                "1 0 8:1 / / rw - overlay overlay rw\n742 731 254:0 {root} /etc/hostname rw,relatime - ext4 /dev/vda rw\n"
            )
        };
        let table: [(&str, String, &str, Option<&str>); 7] = [
            (
                "docker, /var/lib/docker on /",
                mount(&format!("/var/lib/docker/containers/{ID}/hostname")),
                "0::/",
                Some(ID),
            ),
            ("docker, /var/lib/docker mounted apart", mount(&format!("/containers/{ID}/hostname")), "0::/", Some(ID)),
            (
                "podman",
                mount(&format!("/containers/storage/overlay-containers/{ID}/userdata/hostname")),
                "0::/",
                Some(ID),
            ),
            ("cgroup v1", String::new(), &format!("12:memory:/docker/{ID}\n0::/"), Some(ID)),
            ("systemd driver", String::new(), &format!("0::/system.slice/docker-{ID}.scope"), Some(ID)),
            // A host: no /etc/hostname mount, cgroups without ids (a 32-digit one is not an id).
            (
                "host",
                mount("/etc/hostname-of-a-vm"),
                "4:memory:/process_api/1bf98e2a34991ab826b918e116d5b4c4\n0::/",
                None,
            ),
            ("nothing readable", String::new(), "", None),
        ];
        for (what, mountinfo, cgroup, expected) in table {
            assert_eq!(container_id(&mountinfo, cgroup).as_deref(), expected, "{what}");
        }
    }
}
