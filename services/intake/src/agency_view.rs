//! The agency's view of its requests: one request, or a filtered page of them.

use crs_platform::FieldViolations;
use crs_platform::auth::Principal;
use crs_platform::paging;
use crs_platform::time::millis_from_timestamp;
use crs_proto::common::{Category, RequestStatus};
use crs_proto::intake::*;
use sea_orm::{ColumnTrait, Condition, EntityTrait, QueryFilter, QueryOrder, QuerySelect};

use crate::entities::{request, request_item};
use crate::service::{Intake, Result};
use crate::views::to_government_request;

impl Intake {
    pub(crate) async fn get(&self, principal: Principal, req: GetRequestRequest) -> Result<GetRequestResponse> {
        let row = self.visible_request(&principal, &req.request_id).await?;
        let items = self.items_of(&row.id).await?;
        Ok(GetRequestResponse { request: Some(to_government_request(&row, &items)) })
    }

    pub(crate) async fn list(&self, principal: Principal, req: ListRequestsRequest) -> Result<ListRequestsResponse> {
        let agency = self.calling_agency(&principal).await?;
        let mut v = FieldViolations::new();
        if req.status != 0 && !matches!(RequestStatus::try_from(req.status), Ok(s) if s != RequestStatus::Unspecified) {
            v.add("status", "must be a known status");
        }
        if req.category != 0 && !matches!(Category::try_from(req.category), Ok(c) if c != Category::Unspecified) {
            v.add("category", "must be a known category");
        }
        let after = req.received_after.as_ref().map(millis_from_timestamp);
        let before = req.received_before.as_ref().map(millis_from_timestamp);
        if let (Some(a), Some(b)) = (after, before)
            && a >= b
        {
            v.add("received_before", "must be later than received_after");
        }
        let filters = format!(
            "status={};category={};after={};before={}",
            req.status,
            req.category,
            after.unwrap_or(i64::MIN),
            before.unwrap_or(i64::MAX)
        );
        let cursor = match paging::decode(&req.page_token, "requests", &filters) {
            Ok(Some(pos)) => match pos.as_slice() {
                [at, id] if let Ok(at) = at.parse::<i64>() => Some((at, id.clone())),
                _ => {
                    v.add("page_token", "is not a token this service issued");
                    None
                }
            },
            Ok(None) => None,
            Err(e) => {
                v.extend(e);
                None
            }
        };
        v.into_result()?;
        let size = paging::page_size(req.page_size);

        let mut cond = Condition::all().add(request::Column::AgencyId.eq(agency.id.clone()));
        if req.status != 0 {
            cond = cond.add(request::Column::Status.eq(req.status));
        }
        if req.category != 0 {
            cond = cond.add(request::Column::Category.eq(req.category));
        }
        if let Some(a) = after {
            cond = cond.add(request::Column::ReceivedAt.gte(a));
        }
        if let Some(b) = before {
            cond = cond.add(request::Column::ReceivedAt.lt(b));
        }
        // Newest first, read a chunk at a time so a page of large requests stops at the byte
        // budget without loading the rest; the token is the position after the last one returned.
        let mut page: Vec<crs_proto::intake::GovernmentRequest> = Vec::new();
        let (mut bytes, mut more, mut position) = (0usize, false, cursor);
        'chunks: while (page.len() as u64) < size {
            let mut chunk_cond = cond.clone();
            if let Some((at, id)) = &position {
                chunk_cond = chunk_cond.add(Condition::any().add(request::Column::ReceivedAt.lt(*at)).add(
                    Condition::all().add(request::Column::ReceivedAt.eq(*at)).add(request::Column::Id.lt(id.clone())),
                ));
            }
            let want = (size - page.len() as u64).min(LIST_CHUNK);
            let rows = request::Entity::find()
                .filter(chunk_cond)
                .order_by_desc(request::Column::ReceivedAt)
                .order_by_desc(request::Column::Id)
                .limit(want + 1)
                .all(&self.db)
                .await?;
            let chunk_more = rows.len() as u64 > want;
            let rows: Vec<_> = rows.into_iter().take(want as usize).collect();
            let ids: Vec<String> = rows.iter().map(|r| r.id.clone()).collect();
            let mut items: std::collections::HashMap<String, Vec<request_item::Model>> = Default::default();
            for item in request_item::Entity::find()
                .filter(request_item::Column::RequestId.is_in(ids))
                .order_by_asc(request_item::Column::ItemIndex)
                .all(&self.db)
                .await?
            {
                items.entry(item.request_id.clone()).or_default().push(item);
            }
            for (i, r) in rows.iter().enumerate() {
                let view = to_government_request(r, items.get(&r.id).map_or(&[][..], |v| v));
                let len = prost::Message::encoded_len(&view);
                if !page.is_empty() && bytes + len > paging::MAX_PAGE_BYTES {
                    more = true;
                    break 'chunks;
                }
                bytes += len;
                page.push(view);
                position = Some((r.received_at, r.id.clone()));
                if i + 1 == rows.len() {
                    more = chunk_more;
                }
            }
            if !chunk_more {
                break;
            }
        }
        let next_page_token = match (more, &position) {
            (true, Some((at, id))) => paging::encode("requests", &filters, &[&at.to_string(), id]),
            _ => String::new(),
        };
        Ok(ListRequestsResponse { requests: page, next_page_token })
    }
}

/// Requests read per query while filling a page.
const LIST_CHUNK: u64 = 50;
