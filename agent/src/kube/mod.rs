//! Pod metadata from the Kubernetes API.
