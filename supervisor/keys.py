"""The supervisor's keys on the aiohttp application."""

from __future__ import annotations

from aiohttp import web

from supervisor.board import BoardService
from supervisor.notifier import BoardNotifier
from supervisor.spy import SpyService
from supervisor.stats import StatsService

BOARD = web.AppKey("supervisor_board", BoardService)
BOARD_NOTIFIER = web.AppKey("supervisor_board_notifier", BoardNotifier)
SPY = web.AppKey("supervisor_spy", SpyService)
STATS = web.AppKey("supervisor_stats", StatsService)
