"""(being written: issue 7)"""

from fastapi import APIRouter

router = APIRouter(prefix="/v1")
