"""Every Surge gRPC service in one place: the proto modules that define them, their names
(health, reflection, the scopes table's completeness test), every method (pre-initialised
metrics), and the servicers App.start registers, each built from the App's domain objects.
A new service is added here once."""

from __future__ import annotations

from typing import TYPE_CHECKING

import grpc

from inventory.changes import ItemChanges
from inventory.ledger import StockLedger
from inventory.listing import ItemListing
from inventory.products import Products
from loyalty.v1 import (
    audit_pb2,
    audit_pb2_grpc,
    campaign_pb2,
    campaign_pb2_grpc,
    cards_pb2,
    cards_pb2_grpc,
    catalog_pb2,
    catalog_pb2_grpc,
    checkin_pb2,
    checkin_pb2_grpc,
    codes_pb2,
    codes_pb2_grpc,
    earn_rules_pb2,
    earn_rules_pb2_grpc,
    events_pb2,
    events_pb2_grpc,
    fulfilment_pb2,
    fulfilment_pb2_grpc,
    locations_pb2,
    locations_pb2_grpc,
    lottery_pb2,
    lottery_pb2_grpc,
    member_pb2,
    member_pb2_grpc,
    redemption_pb2,
    redemption_pb2_grpc,
    stock_counts_pb2,
    stock_counts_pb2_grpc,
    stock_pb2,
    stock_pb2_grpc,
)
from server.interceptors import split_method
from server.services import (
    audit,
    campaign,
    cards,
    catalog,
    checkin,
    codes,
    earn_rules,
    events,
    fulfilment,
    locations,
    lottery,
    member,
    redemption,
    stock,
    stock_counts,
)

if TYPE_CHECKING:
    from server.app import App

# The proto modules holding Surge's services, in the order they are listed.
_MODULES = (
    catalog_pb2,
    campaign_pb2,
    member_pb2,
    redemption_pb2,
    audit_pb2,
    codes_pb2,
    fulfilment_pb2,
    events_pb2,
    stock_pb2,
    locations_pb2,
    stock_counts_pb2,
    lottery_pb2,
    checkin_pb2,
    cards_pb2,
    earn_rules_pb2,
)

SERVICE_NAMES = tuple(
    service.full_name
    for module in _MODULES
    for service in module.DESCRIPTOR.services_by_name.values()
)


def rpc_methods(*, unary_only: bool = False) -> list[tuple[str, str]]:
    """(service, method) of every Surge RPC (the scopes table must name each one), or of
    the unary ones, whose gRPC metrics are pre-initialised (a stream's series are labelled
    with its own grpc_type and appear on its first call)."""
    names = []
    for module in _MODULES:
        for service in module.DESCRIPTOR.services_by_name.values():
            names += [
                split_method(f"/{service.full_name}/{m.name}")
                for m in service.methods
                if not (unary_only and (m.client_streaming or m.server_streaming))
            ]
    return names


def add_services(server: grpc.aio.Server, app: App) -> None:
    """Every servicer, thin adapters over the app's domain objects."""
    catalog_pb2_grpc.add_CatalogServiceServicer_to_server(
        catalog.CatalogService(
            app.catalog,
            Products(app.pool),
            ItemChanges(app.pool),
            ItemListing(app.pool),
        ),
        server,
    )
    stock_pb2_grpc.add_StockServiceServicer_to_server(
        stock.StockService(StockLedger(app.pool)), server
    )
    campaign_pb2_grpc.add_CampaignServiceServicer_to_server(
        campaign.CampaignService(app.campaigns, app.campaign_changes), server
    )
    member_pb2_grpc.add_MemberServiceServicer_to_server(member.MemberService(app.points), server)
    redemption_pb2_grpc.add_RedemptionServiceServicer_to_server(
        redemption.RedemptionService(
            app.admission,
            app.lifecycle,
            app.redemption_reads,
            app.points.members,
            app.offers,
            app.points.statements,
            app.quotes,
        ),
        server,
    )
    audit_pb2_grpc.add_AuditServiceServicer_to_server(audit.AuditService(app.audit_trail), server)
    codes_pb2_grpc.add_CodeServiceServicer_to_server(codes.CodeService(app.code_pools), server)
    fulfilment_pb2_grpc.add_FulfilmentServiceServicer_to_server(
        fulfilment.FulfilmentService(app.fulfilment), server
    )
    events_pb2_grpc.add_EventServiceServicer_to_server(
        events.EventService(app.event_stream), server
    )
    locations_pb2_grpc.add_LocationServiceServicer_to_server(
        locations.LocationService(app.locations), server
    )
    stock_counts_pb2_grpc.add_StockCountServiceServicer_to_server(
        stock_counts.StockCountService(app.low_stock, app.stock_counts), server
    )
    lottery_pb2_grpc.add_LotteryServiceServicer_to_server(
        lottery.LotteryService(app.lotteries, app.draws), server
    )
    checkin_pb2_grpc.add_CheckInServiceServicer_to_server(
        checkin.CheckInService(app.checkins), server
    )
    cards_pb2_grpc.add_CardServiceServicer_to_server(cards.CardService(app.cards), server)
    earn_rules_pb2_grpc.add_EarnRuleServiceServicer_to_server(
        earn_rules.EarnRuleService(app.points), server
    )
