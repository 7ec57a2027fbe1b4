//! Dead letters: hand-offs that were refused for good, or kept failing past the outbox's maximum
//! age. Every service serves `crs.admin.v1.OutboxAdminService` for its own outbox, so an admin
//! can list them and, once the cause is fixed, replay them.

use crs_proto::admin::outbox_admin_service_server::OutboxAdminService;
use crs_proto::admin::*;
use sea_orm::{ConnectionTrait, DatabaseConnection, DbErr, TransactionTrait};
use tonic::{Request, Response, Status};

use crate::auth::{self, Role};
use crate::error::{FieldViolations, ServiceError};
use crate::outbox::{Outbox, statement};
use crate::paging;
use crate::time::{now_millis, timestamp_from_millis};

/// How many dead letters the outbox holds.
pub async fn count(db: &DatabaseConnection) -> Result<i64, DbErr> {
    let stmt =
        statement(db.get_database_backend(), "SELECT COUNT(*) AS n FROM outbox WHERE dead_at IS NOT NULL", vec![]);
    Ok(db.query_one_raw(stmt).await?.map(|r| r.try_get::<i64>("", "n")).transpose()?.unwrap_or(0))
}

/// The outbox by topic: pending rows, the oldest pending row's creation time, dead letters.
pub async fn backlog_by_topic(db: &DatabaseConnection) -> Result<Vec<TopicBacklog>, DbErr> {
    let stmt = statement(
        db.get_database_backend(),
        "SELECT topic, \
                SUM(CASE WHEN dead_at IS NULL THEN 1 ELSE 0 END) AS pending, \
                MIN(CASE WHEN dead_at IS NULL THEN created_at END) AS oldest, \
                SUM(CASE WHEN dead_at IS NULL THEN 0 ELSE 1 END) AS dead \
         FROM outbox GROUP BY topic ORDER BY topic",
        vec![],
    );
    let now = now_millis();
    db.query_all_raw(stmt)
        .await?
        .into_iter()
        .map(|r| {
            Ok(TopicBacklog {
                topic: r.try_get("", "topic")?,
                pending: r.try_get::<i64>("", "pending")?.max(0) as u64,
                oldest_pending_age: r
                    .try_get::<Option<i64>>("", "oldest")?
                    .map(|o| crate::time::duration((now - o).max(0) / 1000)),
                dead_letters: r.try_get::<i64>("", "dead")?.max(0) as u64,
            })
        })
        .collect()
}

/// The dead letters after `after` (created_at, id), oldest first.
pub async fn list(db: &DatabaseConnection, after: Option<(i64, String)>, limit: u64) -> Result<Vec<DeadLetter>, DbErr> {
    let (cursor_at, cursor_id) = after.unwrap_or((i64::MIN, String::new()));
    let stmt = statement(
        db.get_database_backend(),
        "SELECT id, topic, attempts, created_at, dead_at, last_error, LENGTH(payload) AS bytes FROM outbox \
         WHERE dead_at IS NOT NULL AND (created_at > $1 OR (created_at = $1 AND id > $2)) \
         ORDER BY created_at, id LIMIT $3",
        vec![cursor_at.into(), cursor_id.into(), (limit as i64).into()],
    );
    db.query_all_raw(stmt)
        .await?
        .into_iter()
        .map(|r| {
            Ok(DeadLetter {
                id: r.try_get("", "id")?,
                topic: r.try_get("", "topic")?,
                attempts: r.try_get::<i32>("", "attempts")?.max(0) as u32,
                created_at: Some(timestamp_from_millis(r.try_get("", "created_at")?)),
                dead_at: r.try_get::<Option<i64>>("", "dead_at")?.map(timestamp_from_millis),
                last_error: r.try_get::<Option<String>>("", "last_error")?.unwrap_or_default(),
                payload_bytes: r.try_get::<i32>("", "bytes")?.max(0) as u32,
            })
        })
        .collect()
}

/// Puts dead letters back, in one transaction: tried at once, with a fresh retry window. `None`
/// replays them all. Wakes the relays, which would otherwise leave the rows to their next poll.
pub async fn replay(outbox: &Outbox, ids: Option<&[String]>) -> Result<u64, DbErr> {
    let txn = outbox.db().begin().await?;
    let backend = txn.get_database_backend();
    let now = now_millis();
    let set = "UPDATE outbox SET dead_at = NULL, locked_until = NULL, available_at = $1, created_at = $1, attempts = 0";
    let replayed = match ids {
        None => txn
            .execute_raw(statement(backend, &format!("{set} WHERE dead_at IS NOT NULL"), vec![now.into()]))
            .await?
            .rows_affected(),
        Some(ids) => {
            let mut n = 0;
            for id in ids {
                let stmt = statement(
                    backend,
                    &format!("{set} WHERE dead_at IS NOT NULL AND id = $2"),
                    vec![now.into(), id.clone().into()],
                );
                n += txn.execute_raw(stmt).await?.rows_affected();
            }
            n
        }
    };
    txn.commit().await?;
    if replayed > 0 {
        outbox.wake();
    }
    Ok(replayed)
}

#[derive(Debug, thiserror::Error)]
enum AdminError {
    #[error("invalid request")]
    Invalid(FieldViolations),
    #[error(transparent)]
    Auth(#[from] auth::AuthError),
    #[error(transparent)]
    Internal(#[from] DbErr),
}

impl ServiceError for AdminError {
    fn code(&self) -> tonic::Code {
        match self {
            AdminError::Invalid(_) => tonic::Code::InvalidArgument,
            AdminError::Auth(e) => e.code(),
            AdminError::Internal(e) if crate::db::is_unavailable(e) => tonic::Code::Unavailable,
            AdminError::Internal(_) => tonic::Code::Internal,
        }
    }

    fn violations(&self) -> Option<&FieldViolations> {
        match self {
            AdminError::Invalid(v) => Some(v),
            _ => None,
        }
    }
}

impl From<AdminError> for Status {
    fn from(e: AdminError) -> Status {
        crate::error::to_status(&e)
    }
}

/// The admin service over one outbox.
#[derive(Clone, Debug)]
pub struct OutboxAdmin {
    outbox: Outbox,
}

impl OutboxAdmin {
    pub fn new(outbox: Outbox) -> Self {
        Self { outbox }
    }
}

#[tonic::async_trait]
impl OutboxAdminService for OutboxAdmin {
    async fn list_dead_letters(
        &self,
        request: Request<ListDeadLettersRequest>,
    ) -> Result<Response<ListDeadLettersResponse>, Status> {
        let principal = auth::principal(&request)?;
        auth::require_role(&principal, &[Role::Admin]).map_err(AdminError::from)?;
        let req = request.into_inner();
        let size = paging::page_size(req.page_size);
        let after = match paging::decode(&req.page_token, "dead_letters", "").map_err(AdminError::Invalid)? {
            Some(pos) => match pos.as_slice() {
                [at, id] if let Ok(at) = at.parse::<i64>() => Some((at, id.clone())),
                _ => {
                    return Err(AdminError::Invalid(FieldViolations::single(
                        "page_token",
                        "is not a token this service issued",
                    ))
                    .into());
                }
            },
            None => None,
        };
        let mut page = list(self.outbox.db(), after, size + 1).await.map_err(AdminError::from)?;
        let more = page.len() as u64 > size;
        page.truncate(size as usize);
        let next_page_token = match (more, page.last()) {
            (true, Some(last)) => {
                let at = last.created_at.as_ref().map(crate::time::millis_from_timestamp).unwrap_or_default();
                paging::encode("dead_letters", "", &[&at.to_string(), &last.id])
            }
            _ => String::new(),
        };
        Ok(Response::new(ListDeadLettersResponse { dead_letters: page, next_page_token }))
    }

    async fn get_outbox_status(
        &self,
        request: Request<GetOutboxStatusRequest>,
    ) -> Result<Response<GetOutboxStatusResponse>, Status> {
        let principal = auth::principal(&request)?;
        auth::require_role(&principal, &[Role::Admin]).map_err(AdminError::from)?;
        let topics = backlog_by_topic(self.outbox.db()).await.map_err(AdminError::from)?;
        Ok(Response::new(GetOutboxStatusResponse { topics }))
    }

    async fn replay_dead_letters(
        &self,
        request: Request<ReplayDeadLettersRequest>,
    ) -> Result<Response<ReplayDeadLettersResponse>, Status> {
        let principal = auth::principal(&request)?;
        auth::require_role(&principal, &[Role::Admin]).map_err(AdminError::from)?;
        let req = request.into_inner();
        let ids = match (req.all, req.ids.is_empty()) {
            (true, true) => None,
            (false, false) => Some(req.ids.as_slice()),
            (true, false) => {
                return Err(AdminError::Invalid(FieldViolations::single("ids", "must be empty when all is set")).into());
            }
            (false, true) => {
                return Err(AdminError::Invalid(FieldViolations::single(
                    "ids",
                    "name the dead letters to replay, or set all",
                ))
                .into());
            }
        };
        let replayed = replay(&self.outbox, ids).await.map_err(AdminError::from)?;
        tracing::warn!(replayed, by = %principal.subject(), "dead letters replayed");
        Ok(Response::new(ReplayDeadLettersResponse { replayed: replayed as u32 }))
    }
}
