"""The web faces: the OAuth sub-app, its edge guard, how it reads parameters and writes
answers, its OpenAPI document, and the hosted pages."""
