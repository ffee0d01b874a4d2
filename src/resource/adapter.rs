//! [`ResourceManager`]: any [`AsyncResource`] as a bb8 [`ManageConnection`], so that it can be
//! pooled by an [`AsyncResourcePool`](super::AsyncResourcePool).

use std::mem::ManuallyDrop;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;

use bb8::ManageConnection;
use uno_actors::AsyncManager;

use super::traits::AsyncResource;

/// Adapts an [`AsyncResource`] to bb8: `connect` is [`AsyncResource::open`], `is_valid` is
/// [`AsyncResource::health_check`], `has_broken` is [`AsyncResource::is_broken`], and a
/// connection bb8 drops is closed with [`AsyncResource::close`] (as a cleanup task the
/// manager's shutdown waits for).
pub struct ResourceManager<R: AsyncResource> {
    config: Arc<R::Config>,
    manager: Option<AsyncManager>,
}

impl<R: AsyncResource> std::fmt::Debug for ResourceManager<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResourceManager")
            .field("resource", &std::any::type_name::<R>())
            .finish_non_exhaustive()
    }
}

impl<R: AsyncResource> ResourceManager<R> {
    /// A manager opening resources from `config`. Closes of discarded resources are handed to
    /// `manager`'s cleanup tasks when given (else spawned on the current runtime).
    pub fn new(config: Arc<R::Config>, manager: Option<AsyncManager>) -> Self {
        Self { config, manager }
    }
}

/// A pooled resource. Dereferences to the resource; closing it is handled by the pool.
pub struct ResourceConn<R: AsyncResource> {
    resource: ManuallyDrop<R>,
    manager: Option<AsyncManager>,
}

impl<R: AsyncResource> Deref for ResourceConn<R> {
    type Target = R;
    fn deref(&self) -> &R {
        &self.resource
    }
}

impl<R: AsyncResource> DerefMut for ResourceConn<R> {
    fn deref_mut(&mut self) -> &mut R {
        &mut self.resource
    }
}

impl<R: AsyncResource> Drop for ResourceConn<R> {
    fn drop(&mut self) {
        // SAFETY: `resource` is taken exactly once, here, and never touched again.
        let resource = unsafe { ManuallyDrop::take(&mut self.resource) };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return; // no runtime left to run `close` on: dropping is all that can be done
        };
        match &self.manager {
            Some(m) => m.spawn_cleanup("resource.close", resource.close()),
            None => {
                runtime.spawn(resource.close());
            }
        }
    }
}

impl<R: AsyncResource> ManageConnection for ResourceManager<R> {
    type Connection = ResourceConn<R>;
    type Error = R::Error;

    async fn connect(&self) -> Result<ResourceConn<R>, R::Error> {
        let resource = R::open(&self.config).await?;
        Ok(ResourceConn {
            resource: ManuallyDrop::new(resource),
            manager: self.manager.clone(),
        })
    }

    async fn is_valid(&self, conn: &mut ResourceConn<R>) -> Result<(), R::Error> {
        conn.resource.health_check().await
    }

    fn has_broken(&self, conn: &mut ResourceConn<R>) -> bool {
        conn.resource.is_broken()
    }
}
