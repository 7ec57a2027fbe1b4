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
        // Newest first; the token is the position after the last one returned.
        if let Some((at, id)) = cursor {
            cond = cond.add(
                Condition::any()
                    .add(request::Column::ReceivedAt.lt(at))
                    .add(Condition::all().add(request::Column::ReceivedAt.eq(at)).add(request::Column::Id.lt(id))),
            );
        }
        let rows = request::Entity::find()
            .filter(cond)
            .order_by_desc(request::Column::ReceivedAt)
            .order_by_desc(request::Column::Id)
            .limit(size + 1)
            .all(&self.db)
            .await?;
        let more = rows.len() as u64 > size;
        let rows: Vec<_> = rows.into_iter().take(size as usize).collect();
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
        let next_page_token = match (more, rows.last()) {
            (true, Some(last)) => paging::encode("requests", &filters, &[&last.received_at.to_string(), &last.id]),
            _ => String::new(),
        };
        Ok(ListRequestsResponse {
            requests: rows.iter().map(|r| to_government_request(r, items.get(&r.id).map_or(&[][..], |v| v))).collect(),
            next_page_token,
        })
    }
}
