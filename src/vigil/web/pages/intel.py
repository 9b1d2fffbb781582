"""(being built)"""

from fastapi import APIRouter

from vigil.web.console import Console


def router(console: Console) -> APIRouter:
    return APIRouter(include_in_schema=False)
