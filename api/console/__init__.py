"""(being written: issue 7) The console: server-rendered pages for merchants and affiliates."""

from fastapi import APIRouter

router = APIRouter()
