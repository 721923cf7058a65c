"""Protobuf <-> domain for campaigns as a storefront sees them (offers) and as an operator
changes them (UpdateCampaign's field mask). server/convert.py has the rest."""

from __future__ import annotations

from common.errors import InvalidArgument
from flashsale.changes import UPDATABLE, CampaignUpdate
from flashsale.offers import Offer, OfferWindow
from inventory.items import ItemKind
from loyalty.v1 import campaign_pb2, common_pb2, redemption_pb2
from server import convert, convert_pricing

_WINDOW_TO_PB = {
    OfferWindow.ON_SALE: redemption_pb2.OFFER_WINDOW_ON_SALE,
    OfferWindow.UPCOMING: redemption_pb2.OFFER_WINDOW_UPCOMING,
    OfferWindow.ENDED: redemption_pb2.OFFER_WINDOW_ENDED,
}
_WINDOWS_FROM_PB = {
    redemption_pb2.OFFER_WINDOW_UNSPECIFIED: frozenset({OfferWindow.ON_SALE, OfferWindow.UPCOMING}),
    redemption_pb2.OFFER_WINDOW_ON_SALE: frozenset({OfferWindow.ON_SALE}),
    redemption_pb2.OFFER_WINDOW_UPCOMING: frozenset({OfferWindow.UPCOMING}),
}
_KIND_TO_PB = {
    ItemKind.PHYSICAL: common_pb2.ITEM_KIND_PHYSICAL,
    ItemKind.VIRTUAL: common_pb2.ITEM_KIND_VIRTUAL,
    ItemKind.SERVICE: common_pb2.ITEM_KIND_SERVICE,
}
_KIND_FROM_PB = {v: k for k, v in _KIND_TO_PB.items()}


def offer_windows(value: int) -> frozenset[OfferWindow]:
    windows: frozenset[OfferWindow] | None = _WINDOWS_FROM_PB.get(value)  # type: ignore[call-overload]
    if windows is None:
        raise InvalidArgument(
            "window", "must be OFFER_WINDOW_ON_SALE, OFFER_WINDOW_UPCOMING or unspecified"
        )
    return windows


def kind_filter(value: int) -> ItemKind | None:
    """ITEM_KIND_UNSPECIFIED: no filter."""
    if value == common_pb2.ITEM_KIND_UNSPECIFIED:
        return None
    kind: ItemKind | None = _KIND_FROM_PB.get(value)  # type: ignore[call-overload]
    if kind is None:
        raise InvalidArgument("item_kind", f"unknown item kind {value}")
    return kind


def offer(value: Offer) -> redemption_pb2.Offer:
    return redemption_pb2.Offer(
        campaign_id=value.campaign_id,
        name=value.name,
        window=_WINDOW_TO_PB[value.window],
        starts_at=convert.timestamp(value.starts_at),
        ends_at=convert.timestamp(value.ends_at),
        points_price=value.points_price,
        cash_price_cents=value.cash_price_cents,
        per_member_limit=value.per_member_limit,
        approximate_units_remaining=value.approximate_units_remaining,
        item_id=value.item_id,
        item_sku=value.item_sku,
        item_name=value.item_name,
        item_kind=_KIND_TO_PB[value.item_kind],
        price_rules=[convert_pricing.price_rule(r) for r in value.price_rules],
        points_price_now=value.points_price_now,
    )


def campaign_update(request: campaign_pb2.UpdateCampaignRequest) -> CampaignUpdate:
    """The fields update_mask names, taken from request.campaign (AIP-134)."""
    paths = list(request.update_mask.paths)
    if not paths:
        raise InvalidArgument("update_mask", "is required: name the fields to change")
    values: dict[str, object] = {}
    c = request.campaign
    for path in paths:
        if path not in UPDATABLE:
            raise InvalidArgument(
                "update_mask", f"cannot change {path!r}; one of: {', '.join(UPDATABLE)}"
            )
        if path in ("starts_at", "ends_at"):
            values[path] = convert.required_time(path, c, path)
        elif path == "price_rules":
            values[path] = tuple(convert_pricing.price_rules(c.price_rules))
        else:
            values[path] = getattr(c, path)
    return CampaignUpdate(**values)  # type: ignore[arg-type]
