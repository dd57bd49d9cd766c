-- wrk: send each request with the next pre-signed DPoP proof (benchmarks/dpop.py).
local proofs = {}
local token = os.getenv("DPOP_TOKEN")
for line in io.lines(os.getenv("DPOP_PROOFS")) do
  proofs[#proofs + 1] = line
end
local i = 0

request = function()
  i = i + 1
  if i > #proofs then i = 1 end
  return wrk.format("GET", nil, {
    ["Authorization"] = "DPoP " .. token,
    ["DPoP"] = proofs[i],
  })
end
