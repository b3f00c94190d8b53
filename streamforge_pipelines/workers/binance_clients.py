"""The exchange clients a Binance loader task opens: REST (paced by the task's governor) and the bulk
archive, for one market, closed together; their figures go into the task's result however it ends."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass

from ..protocol import Command
from ..settings import Settings
from .archive_client import ArchiveClient
from .errors import TaskInvalid
from .exchange_client import BinanceRestClient
from .governor import WeightGovernor
from .loader_task import LoadResult


@dataclass
class BinanceClients:
    """A task's REST and archive clients (:meth:`~.loader_task.Loader.clients` of the Binance loaders)."""

    rest: BinanceRestClient
    archive: ArchiveClient

    def account(self, result: LoadResult, governor: WeightGovernor) -> None:
        result.archive_requests = self.archive.requests
        result.requests, result.retries = self.rest.requests, self.rest.retries + self.archive.retries
        result.http_429, result.http_418 = self.rest.http_429, self.rest.http_418
        result.weight_budget_used = governor.peak_share


def rest_url_of(settings: Settings, market: str) -> str:
    """The market's REST base URL, or a :class:`~.errors.TaskInvalid` when none is configured."""
    url = settings.rest_url(market)
    if url is None:
        raise TaskInvalid("EXCHANGE_URL is not set: no exchange to load from")
    return url


@asynccontextmanager
async def binance_clients(
    settings: Settings, market: str, governor: WeightGovernor
) -> AsyncIterator[BinanceClients]:
    """REST at the market's URL and the archive at ``EXCHANGE_ARCHIVE_URL`` (else the REST URL)."""
    rest_url = rest_url_of(settings, market)
    async with (
        BinanceRestClient(
            rest_url, governor=governor, market=market, waf_pause_s=settings.exchange_waf_pause_s
        ) as rest,
        ArchiveClient(
            settings.archive_url or rest_url,
            market=market,
            max_member_bytes=settings.archive_max_member_bytes,
        ) as archive,
    ):
        yield BinanceClients(rest, archive)


class BinanceLoader:
    r"""What the Binance loaders share as :class:`~.loader_task.Loader`\ s: their clients, the REST and
    archive clients of the command's market (spot unless it names ``usdm``)."""

    def clients(
        self, command: Command, settings: Settings, governor: WeightGovernor
    ) -> AbstractAsyncContextManager[BinanceClients]:
        return binance_clients(settings, command.market or "spot", governor)
